"""The overview tells staff which job kinds failed to load, where and why; nobody else."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from jobs import kinds

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


@pytest.fixture
def broken_kind(kinds_folder: Path) -> Path:
    module = kinds_folder / "pricer.py"
    module.write_text("import math\n\nraise ValueError('PRICER_TOKEN is not set')\n")
    kinds.load_configured()
    return module


def test_the_overview_shows_staff_the_kinds_that_failed_to_load(
    staff_client: Client, broken_kind: Path
) -> None:
    page = staff_client.get("/").content.decode()

    assert "Job kinds that failed to load" in page
    assert "coreboard_kinds.pricer" in page
    assert f"{broken_kind}:3" in page
    assert "ValueError: PRICER_TOKEN is not set" in page
    assert "<summary>Traceback</summary>" in page


def test_the_overview_hides_failed_kinds_from_people_who_are_not_staff(
    alice_client: Client, broken_kind: Path
) -> None:
    page = alice_client.get("/").content.decode()

    assert "failed to load" not in page
    assert "pricer" not in page
    assert str(broken_kind) not in page


def test_the_overview_says_nothing_when_every_kind_loaded(
    staff_client: Client, kinds_folder: Path
) -> None:
    kinds.load_configured()

    assert "failed to load" not in staff_client.get("/").content.decode()
