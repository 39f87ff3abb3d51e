"""The docs' Python examples, run exactly as written: every ```python block of a page, in
order, in one fresh module per page (importable by its name while it runs), with the kinds
they register forgotten after."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from django.conf import settings

from coreconf import paths
from jobs import kinds

pytestmark = pytest.mark.services

# The pages whose examples are code a person copies and that run without a server
# (docs/api.md's client example needs a live one).
PAGES = ["README.md", "docs/job-kinds.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks(page: str) -> list[tuple[int, str]]:
    """`(line, source)` of each ```python block of `page`, in order."""
    text = (paths.BASE_DIR / page).read_text()
    return [
        (text.count("\n", 0, found.start()) + 2, found.group(1)) for found in BLOCK.finditer(text)
    ]


def test_the_pages_have_examples() -> None:
    assert len(python_blocks("README.md")) >= 1
    assert len(python_blocks("docs/job-kinds.md")) >= 3


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs_as_written(page: str) -> None:
    name = "docs_" + re.sub(r"\W", "_", Path(page).stem)
    module = types.ModuleType(name)
    module.__file__ = str(paths.BASE_DIR / page)
    sys.modules[name] = module
    try:
        with kinds.temporary():
            # Kinds the suite registered from the docs (the worked example as a module) would
            # clash with the page's own: only the built-in ones stay.
            for kind in kinds.all_kinds():
                if type(kind).__module__ not in settings.BUILTIN_JOB_KINDS:
                    kinds.unregister(kind.name)
            for line, source in python_blocks(page):
                code = compile(source, f"{page}, block at line {line}", "exec")
                exec(code, module.__dict__)  # noqa: S102 - the docs' own examples
    finally:
        del sys.modules[name]
    assert {kind.name for kind in kinds.all_kinds()} >= {"primes", "wordcount"}
