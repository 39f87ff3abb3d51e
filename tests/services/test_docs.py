"""The docs compared with the code: generated references are current."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.core.management import CommandError, call_command

from jobs import reference
from jobs.management.commands import reference as reference_command
from launcher import stack

pytestmark = pytest.mark.services

ROOT = stack.BASE_DIR


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
