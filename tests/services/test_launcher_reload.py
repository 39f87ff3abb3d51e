"""The pieces of `make run`'s reload: the watcher, the supervisor's restart, the failures
printed at start (the whole loop, with real processes, is tests/integration/test_reload.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from launcher import reload, run, supervisor

pytestmark = pytest.mark.services


def test_the_watcher_reports_an_edited_python_file_and_ignores_others(tmp_path: Path) -> None:
    watcher = reload.KindWatcher([tmp_path])
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        changed: list[str] = []
        # Written until seen: the watcher's thread may not watch yet at the first write.
        while not changed and time.monotonic() < deadline:
            (tmp_path / "notes.txt").write_text("not code")
            (tmp_path / "pricer.py").write_text(f"VERSION = {time.monotonic()}\n")
            changed = watcher.wait_changed(timeout=1)
    finally:
        watcher.stop()
    assert changed == [str(tmp_path / "pricer.py")]
    assert watcher.changed() == []


def test_restart_stops_and_starts_the_named_components_without_counting_a_crash() -> None:
    events: list[str] = []

    def component(name: str) -> supervisor.Component:
        return supervisor.Component(
            name=name,
            start=lambda: events.append(f"start {name}"),
            health=lambda: supervisor.Health.UP,
            stop=lambda: events.append(f"stop {name}"),
            reload_stop=lambda: events.append(f"reload-stop {name}"),
        )

    watcher = supervisor.Supervisor(log=lambda line: None)
    for name in ("Redis", "worker", "daphne"):
        watcher.add(component(name))
    events.clear()

    watcher.restart({"worker", "daphne"})

    assert sorted(events[:2]) == ["reload-stop daphne", "reload-stop worker"]
    assert events[2:] == ["start worker", "start daphne"]
    assert all(not c.starts for c in watcher.components)


def test_make_run_prints_each_failed_kind_on_one_line() -> None:
    report = {
        "failures": [
            {
                "module": "coreboard_kinds.pricer",
                "source": "kinds folder",
                "file": "/srv/kinds/pricer.py",
                "line": 3,
                "error": "ValueError",
                "message": "PRICER_TOKEN is not set",
            },
            {
                "module": "myteam.kindz",
                "source": "COREBOARD_JOB_KINDS",
                "file": "",
                "line": None,
                "error": "ModuleNotFoundError",
                "message": "No module named 'myteam'",
            },
        ]
    }

    lines = run.failures_text(report).splitlines()

    assert lines[1:] == [
        "  coreboard_kinds.pricer (kinds folder): /srv/kinds/pricer.py:3: ValueError: "
        "PRICER_TOKEN is not set",
        "  myteam.kindz (COREBOARD_JOB_KINDS): module not found: ModuleNotFoundError: "
        "No module named 'myteam'",
    ]
    assert run.failures_text({"failures": []}) == ""
