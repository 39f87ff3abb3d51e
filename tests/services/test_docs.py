"""The docs compared with the code: generated references are current, and every file a
page names exists."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from coreconf import paths
from jobs import reference
from jobs.management.commands import reference as reference_command

pytestmark = pytest.mark.services

ROOT = paths.BASE_DIR
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A repository path as the docs write it: `jobs/engine/tasks.py`, static/jobs/job.mjs, ...
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:jobs|launcher|project|coreconf|tokens|coreboard|tests|static|templates|docs)"
    r"/[\w./-]*\w\.(?:py|mjs|md|html|css|json|png|toml))\b"
)
# Files that other branches of issue 17 are writing at the same time: the engine modules
# carved out of jobs/engine/dispatch.py, and the configuration reference generated from the
# settings table. Drop this once they are merged.
# A relative Markdown link or image: [text](path) or src="path".
RELATIVE_LINK = re.compile(r"(?:\]\(|src=\")(?!https?:|#|mailto:)([^)\"#\s]+)")


@pytest.mark.parametrize(
    ("path", "generate"),
    reference_command.REFERENCES,
    ids=[path for path, _ in reference_command.REFERENCES],
)
def test_generated_reference_is_current(path: str, generate: Callable[[], str]) -> None:
    committed = (ROOT / path).read_text()
    assert committed == generate(), f"{path} is out of date: run {reference.REGENERATE}"
    # The first line says the page is generated and how to generate it again.
    first_line = committed.splitlines()[0].lower()
    assert "generated" in first_line
    assert "manage.py reference" in first_line


def test_reference_check_names_a_stale_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        reference_command, "REFERENCES", [("docs/protocol.md", lambda: "something else\n")]
    )
    with pytest.raises(CommandError, match=re.escape("docs/protocol.md")):
        call_command("reference", "--check")


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_path_a_page_names_exists(page: Path) -> None:
    text = page.read_text()
    missing = [name for name in REPO_PATH.findall(text) if not (ROOT / name).exists()]
    for link in RELATIVE_LINK.findall(text):
        target = (page.parent / link).resolve()
        if not target.exists():
            missing.append(link)
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"
