"""BENCHMARKS.md's sections (tests/benchmarks/report.py): a part a run leaves out is kept
with the date of the run that measured it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks import report

pytestmark = pytest.mark.services


def test_a_part_kept_twice_keeps_the_date_it_was_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "REPORT", tmp_path / "BENCHMARKS.md")
    headings = {"big": "## Big"}
    report.write_section("speedup", "Measured day 1.\n\n## Fine\n\nf1\n\n## Big\n\nb1")
    for day in (2, 3):
        kept = report.kept_parts("speedup", headings, {"big"})
        fresh = f"Measured day {day}.\n\n## Fine\n\nf{day}"
        report.write_section("speedup", f"{fresh}\n\n{kept['big']}")
    section = report.read_section("speedup")
    assert section.count("_Kept from an earlier run") == 1
    assert "_Kept from an earlier run (Measured day 1)._\n\nb1" in section
    assert "f3" in section
