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


def read_section(name: str) -> str:
    """The current text of section `name` of BENCHMARKS.md (empty when there is none)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = REPORT.read_text() if REPORT.exists() else ""
    found = re.search(re.escape(start) + "\n(.*?)\n" + re.escape(end), text, re.S)
    return found.group(1) if found else ""


def kept_parts(name: str, headings: dict[str, str], skipped: set[str]) -> dict[str, str]:
    """The `## ` parts of section `name` whose heading starts with `headings[key]`, for the
    keys in `skipped`: a run that leaves parts out keeps the earlier run's, marked as such."""
    current = read_section(name)
    measured = current.split("\n", 1)[0] if current.startswith("Measured") else ""
    parts = re.split(r"(?m)^(?=## )", current)
    kept = {}
    for key in skipped:
        for part in parts:
            if key in headings and part.startswith(headings[key]):
                title, _, body = part.strip().partition("\n")
                notes, body = _kept_notes(body)
                # A part kept before keeps the note of the run that measured it (the
                # oldest); one kept for the first time gets this section's date.
                if notes:
                    note = notes[-1]
                elif measured:
                    note = f"_Kept from an earlier run ({measured.rstrip('.')})._"
                else:
                    note = ""
                kept[key] = "\n\n".join(filter(None, [title, note, body])).rstrip()
    return kept


def _kept_notes(body: str) -> tuple[list[str], str]:
    """The "kept from an earlier run" notes that open a part's body, and the rest."""
    lines = body.strip("\n").split("\n")
    notes = []
    while lines and (not lines[0].strip() or lines[0].startswith("_Kept from an earlier run")):
        line = lines.pop(0)
        if line.strip():
            notes.append(line)
    return notes, "\n".join(lines)
