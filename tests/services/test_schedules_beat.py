"""Celery beat's scheduler (jobs.beat) driven by a fake clock, firing into the real service.

Issue 23's must-show: a schedule every minute makes exactly one run per minute over 5
minutes, none while disabled, one (not five) after a 5-minute scheduler outage, and none
(a recorded refusal) while its owner is at quota. The scheduler is the real
DatabaseScheduler subclass with its PostgreSQL lock; only the clock (`app.now`, Django's
`timezone.now`) and the broker are replaced: a fire calls `schedule_fire` in this process,
as the worker's task would.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from jobs import beat
from jobs.models import Job, Schedule
from jobs.services import schedules
from launcher import parent
from project.celery import app

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

STEP = timedelta(seconds=5)


class Clock:
    def __init__(self) -> None:
        # Start on a minute boundary plus a little, like a real beat that started any time.
        self.now = timezone.now().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(app, "now", fake)
    monkeypatch.setattr(timezone, "now", fake)
    return fake


@pytest.fixture
def fired(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> list[datetime]:
    """Times (by the fake clock) at which a beat sent a fire; the fire runs here, at once."""
    times: list[datetime] = []

    def apply_async(self: Any, entry: Any, producer: Any = None, **options: Any) -> None:
        times.append(clock.now)
        schedules.schedule_fire(schedule_id=entry.args[0], fire_id=uuid.uuid4().hex)

    monkeypatch.setattr(beat.CoreboardScheduler, "apply_async", apply_async)
    monkeypatch.setattr(beat.CoreboardScheduler, "producer", None)
    return times


@pytest.fixture
def new_beat() -> Iterator[Any]:
    made: list[beat.CoreboardScheduler] = []

    def make() -> beat.CoreboardScheduler:
        scheduler = beat.CoreboardScheduler(app=app)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.lock.release()


def run_for(clock: Clock, seconds: int, *beats: Any) -> None:
    """Advance the clock `seconds` in steps of 5 s, letting every beat tick at each step
    until it has nothing due (a tick fires at most one entry)."""
    for _ in range(seconds // int(STEP.total_seconds())):
        clock.now += STEP
        for scheduler in beats:
            for _ in range(10):
                if scheduler.tick() > 0:
                    break


def every_minute(owner: User, **extra: Any) -> Schedule:
    return schedules.schedule_save(
        owner=owner,
        name="every minute",
        kind="burn",
        params={"chunks": 1, "ms": 1},
        timing=schedules.Timing(every=1, unit="minutes"),
        **extra,
    )


def gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def test_one_run_per_minute_none_while_disabled_one_after_outage_refused_at_quota(
    alice: User,
    clock: Clock,
    fired: list[datetime],
    new_beat: Any,
    dispatched: list[int],
    settings: Any,
) -> None:
    schedule = every_minute(alice)
    scheduler = new_beat()

    run_for(clock, 300, scheduler)
    assert len(fired) == 5
    assert gaps(fired) == [60.0] * 4
    runs = Job.objects.filter(schedule=schedule)
    assert runs.count() == 5
    assert set(runs.values_list("owner", flat=True)) == {alice.pk}

    # None while disabled, and no catch-up fire when enabled again.
    schedules.schedule_set_enabled(schedule=schedule, enabled=False)
    run_for(clock, 300, scheduler)
    assert len(fired) == 5
    schedules.schedule_set_enabled(schedule=schedule, enabled=True)
    enabled_at = clock.now
    run_for(clock, 60, scheduler)
    assert len(fired) == 6
    assert fired[-1] - enabled_at == timedelta(seconds=60)

    # A 5-minute outage: the beat is gone, a new one starts 5 minutes later.
    scheduler.close()
    clock.now += timedelta(minutes=5)
    restarted = new_beat()
    run_for(clock, 5, restarted)
    assert len(fired) == 7, "one run for the missed ones, not five"
    run_for(clock, 55, restarted)
    assert len(fired) == 7
    run_for(clock, 5, restarted)
    assert len(fired) == 8, "then the schedule keeps its rhythm from the catch-up"
    assert Job.objects.filter(schedule=schedule).count() == 8

    # At quota: the fire is refused, recorded on the schedule with its time, no run made.
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = Job.objects.filter(owner=alice).count()
    run_for(clock, 60, restarted)
    assert len(fired) == 9
    assert Job.objects.filter(schedule=schedule).count() == 8
    schedule.refresh_from_db()
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in schedule.last_error
    assert schedule.last_error_at == fired[-1]


def test_a_second_beat_fires_nothing_until_the_first_is_gone(
    alice: User, clock: Clock, fired: list[datetime], new_beat: Any, dispatched: list[int]
) -> None:
    schedule = every_minute(alice)
    first, second = new_beat(), new_beat()

    run_for(clock, 180, first, second)
    assert len(fired) == 3
    assert gaps(fired) == [60.0, 60.0]

    # The first beat dies 10 s after a fire: the second takes over without firing again
    # before the minute is up, then keeps the rhythm.
    run_for(clock, 10, first, second)
    first.lock.release()
    first._heap = None
    run_for(clock, 50, second)
    assert len(fired) == 4
    assert gaps(fired)[-1] == 60.0
    run_for(clock, 60, second)
    assert len(fired) == 5
    assert Job.objects.filter(schedule=schedule).count() == 5


def test_a_redelivered_fire_makes_no_second_run(alice: User, dispatched: list[int]) -> None:
    schedule = every_minute(alice)
    assert schedules.schedule_fire(schedule_id=schedule.pk, fire_id="message-1") is not None
    assert schedules.schedule_fire(schedule_id=schedule.pk, fire_id="message-1") is None
    assert Job.objects.filter(schedule=schedule).count() == 1


def test_skip_if_the_previous_run_is_active(alice: User, dispatched: list[int]) -> None:
    schedule = every_minute(alice, skip_if_active=True)
    first = schedules.schedule_fire(schedule_id=schedule.pk, fire_id="a")
    assert first is not None
    assert schedules.schedule_fire(schedule_id=schedule.pk, fire_id="b") is None
    schedule.refresh_from_db()
    assert f"job {first.pk}" in schedule.last_error
    Job.objects.filter(pk=first.pk).update(status=Job.Status.SUCCEEDED)
    assert schedules.schedule_fire(schedule_id=schedule.pk, fire_id="c") is not None


def test_a_deactivated_persons_schedules_stop_and_a_deleted_ones_go(alice: User, bob: User) -> None:
    mine, theirs = every_minute(alice), every_minute(bob)
    alice.is_active = False
    alice.save()
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert not mine.periodic_task.enabled
    assert theirs.periodic_task.enabled
    bob.delete()
    assert not Schedule.objects.filter(pk=theirs.pk).exists()
    assert set(PeriodicTask.objects.values_list("pk", flat=True)) == {mine.periodic_task_id}


def test_a_database_error_while_firing_sends_nothing_and_beat_goes_on(
    alice: User,
    clock: Clock,
    fired: list[datetime],
    new_beat: Any,
    dispatched: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_minute(alice)
    scheduler = new_beat()
    failures = [OperationalError("server closed the connection unexpectedly")]
    save = beat.ClockedEntry.save

    def save_or_fail(entry: Any) -> None:
        if failures:
            raise failures.pop()
        save(entry)

    monkeypatch.setattr(beat.ClockedEntry, "save", save_or_fail)
    run_for(clock, 60, scheduler)
    assert fired == [], "its last run could not be written: nothing sent"
    run_for(clock, 5, scheduler)
    assert len(fired) == 1, "sent at the next tick, once"
    run_for(clock, 60, scheduler)
    assert len(fired) == 2


def test_a_beat_whose_make_run_ended_stops_at_its_next_tick(
    alice: User, clock: Clock, fired: list[datetime], new_beat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_minute(alice)
    scheduler = new_beat()
    # Started by a `make run` that is this process's parent: it goes on.
    monkeypatch.setattr(parent, "_supervisor", None)
    monkeypatch.setenv(parent.SUPERVISOR_PID_ENV, str(os.getppid()))
    assert parent.exit_with_parent(0)  # signal 0: no parent-death signal
    run_for(clock, 60, scheduler)
    assert len(fired) == 1
    # That `make run` ended (this process has another parent now): beat stops, firing nothing.
    monkeypatch.setattr(parent, "_supervisor", os.getppid() + 1)
    clock.now += STEP * 12
    with pytest.raises(SystemExit):
        scheduler.tick()
    assert len(fired) == 1
