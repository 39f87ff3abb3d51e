"""BENCHMARKS.md is made of sections, each rewritten by the benchmark that owns it."""

from __future__ import annotations

import re

from coreconf import paths

REPORT = paths.BASE_DIR / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nWritten by `make bench` (tests/benchmarks/); do not edit by hand.\n"


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md, keeping the others."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = REPORT.read_text() if REPORT.exists() else HEADER
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    REPORT.write_text(text)
