"""Schedules end to end: real `celery beat` processes (launcher.worker.beat_command, as
`make run` starts them, with the owner's accounts) and a real prefork worker (the workers'
accounts). Runs are created by the worker; a second beat never doubles them, and takes over
when the first is killed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from jobs.models import Job, Schedule
from jobs.services import schedules
from launcher.worker import beat_command
from tests.processes import ServerProcess
from tests.waiting import poll_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]

INTERVAL_S = 2


def start_beat(env: dict[str, str]) -> ServerProcess:
    process = ServerProcess(beat_command(), {**env, "PYTHONUNBUFFERED": "1"}, "celery beat")
    process.wait_for_line("beat: Starting")
    return process


@pytest.fixture
def beats(child_env: dict[str, str]) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for process in started:
        process.stop()


def runs_of(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(schedule=schedule).order_by("created_at"))


def assert_one_run_per_interval(runs: list[Job]) -> None:
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(runs)]
    # Doubled fires would come milliseconds apart; beat's own jitter is far below a second.
    assert all(gap > INTERVAL_S / 2 for gap in gaps), gaps


def test_runs_are_made_by_the_worker_once_per_interval_and_a_second_beat_takes_over(
    alice: User, child_env: dict[str, str], beats: list[ServerProcess], settings: Any
) -> None:
    settings.COREBOARD_SCHEDULE_MIN_INTERVAL_S = 1
    schedule = schedules.schedule_save(
        owner=alice,
        name="burn every 2 s",
        kind="burn",
        params={"chunks": 1, "ms": 1},
        timing=schedules.Timing(every=INTERVAL_S, unit="seconds"),
    )
    first = start_beat(child_env)
    beats.append(first)
    first.wait_for_line("scheduler lock taken")
    second = start_beat(child_env)
    beats.append(second)

    poll_until(lambda: len(runs_of(schedule)) >= 5 or None, timeout=60)
    assert "scheduler lock taken" not in second.output()
    runs = runs_of(schedule)
    assert_one_run_per_interval(runs)
    # Made on the worker, admitted and run like any job.
    poll_until(
        lambda: Job.objects.filter(pk=runs[0].pk, status=Job.Status.SUCCEEDED).first(),
        timeout=60,
    )

    first.kill_all()
    second.wait_for_line("scheduler lock taken", timeout=30)
    before = len(runs_of(schedule))
    poll_until(lambda: len(runs_of(schedule)) >= before + 3 or None, timeout=60)
    assert_one_run_per_interval(runs_of(schedule))
    schedule.refresh_from_db()
    assert schedule.last_error == ""
