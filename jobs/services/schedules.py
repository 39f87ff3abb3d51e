"""People's schedules: a job's parameters saved to run by a cron expression or an interval.

A Schedule owns one django-celery-beat PeriodicTask (its timing, time zone and enabled flag)
whose task, `jobs.tasks.schedule_fire`, names the schedule; celery beat (jobs.beat) sends it
when due, and a worker calls `schedule_fire`, which admits the run like any job
(`job_create(..., by=None)`: quotas, no rate) or records why it did not.

Every write here changes the Schedule and its PeriodicTask in one transaction, so beat
never sees a schedule half saved.
"""

from __future__ import annotations

import itertools
import json
import zoneinfo
from collections.abc import Mapping
from functools import cache
from typing import Any

from celery.schedules import crontab
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from jobs.models import Job, Schedule
from jobs.selectors.schedules import Timing
from jobs.services import admission
from jobs.services.errors import RateLimited, Rejected
from jobs.services.jobs import JobPlan, job_create, job_plan_unadmitted

__all__ = [
    "FIRE_TASK",
    "Timing",
    "schedule_delete",
    "schedule_deleted",
    "schedule_fire",
    "schedule_save",
    "schedule_set_enabled",
    "schedules_stop_if_inactive",
    "timing_period_s",
]

# The task beat sends: jobs/tasks.py registers it under this name.
FIRE_TASK = "jobs.tasks.schedule_fire"

UNITS: dict[str, int] = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
# A fire that no worker started within one period is dropped (its next one comes), but
# never sooner than this: a worker busy for a moment should not lose a fire.
MIN_EXPIRY_S = 30
NAME_MAX = 120


@cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _timing_errors(timing: Timing) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if timing.timezone not in time_zones():
        errors["timezone"] = [f"Unknown time zone {timing.timezone!r}; use an IANA name."]
    if bool(timing.cron.strip()) == (timing.every is not None):
        errors["cron"] = ["Give either a cron expression or an interval (every), not both."]
        return errors
    if timing.every is not None:
        if timing.unit not in UNITS:
            errors["unit"] = [f"Unknown unit {timing.unit!r}; choose one of: {', '.join(UNITS)}."]
            return errors
        least = settings.COREBOARD_SCHEDULE_MIN_INTERVAL_S
        every = timing.every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            errors["every"] = ["Must be a whole number of at least 1."]
        elif every * UNITS[timing.unit] < least:
            errors["every"] = [
                f"At least {least} seconds between runs (COREBOARD_SCHEDULE_MIN_INTERVAL_S)."
            ]
        return errors
    fields = timing.cron.split()
    if len(fields) != 5:
        errors["cron"] = [
            "Five fields: minute hour day-of-month month day-of-week (e.g. '0 3 * * *')."
        ]
        return errors
    try:
        crontab(*fields)
    except (ValueError, TypeError) as error:
        errors["cron"] = [f"Not a cron expression: {error}."]
    return errors


def timing_period_s(timing: Timing) -> int:
    """The shortest time between two fires (a lower bound for a cron expression): a fire
    older than that when a worker takes it is dropped, since the next one covers it."""
    if timing.every is not None:
        return timing.every * UNITS[timing.unit]
    cron: Any = crontab(*timing.cron.split())

    def gap(values: set[int], size: int) -> int | None:
        ordered = sorted(values)
        if len(ordered) < 2:
            return None
        steps = [b - a for a, b in itertools.pairwise(ordered)]
        return min([*steps, ordered[0] + size - ordered[-1]])

    if (minutes := gap(cron.minute, 60)) is not None:
        return minutes * 60
    if (hours := gap(cron.hour, 24)) is not None:
        return hours * 3600
    return 86400


def _timing_store(timing: Timing) -> dict[str, Any]:
    """The PeriodicTask fields for `timing` (interval or crontab rows, shared when equal)."""
    if timing.every is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(every=timing.every, period=timing.unit)
        return {"interval": interval, "crontab": None}
    minute, hour, day_of_month, month_of_year, day_of_week = timing.cron.split()
    cron, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=zoneinfo.ZoneInfo(timing.timezone),
    )
    return {"interval": None, "crontab": cron}


def _input_clean(
    *,
    owner: Any,
    name: str,
    kind: str,
    params: Mapping[str, Any],
    parallelism: Any,
    chunk_time_limit_s: Any,
    timing: Timing,
) -> JobPlan:
    """The job a fire would make, as validated now; Rejected with every field's errors."""
    errors: dict[str, Any] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["A name is required."]
    elif len(name) > NAME_MAX:
        errors["name"] = [f"At most {NAME_MAX} characters."]
    errors |= _timing_errors(timing)
    plan = None
    try:
        plan = job_plan_unadmitted(
            owner=owner,
            kind=kind,
            params=params,
            parallelism=parallelism,
            chunk_time_limit_s=chunk_time_limit_s,
        )
    except Rejected as refusal:
        errors |= refusal.errors
    if errors or plan is None:
        raise Rejected(errors)
    return plan


def schedule_save(
    *,
    owner: Any,
    name: str,
    kind: str,
    params: Mapping[str, Any],
    timing: Timing,
    enabled: bool = True,
    skip_if_active: bool = False,
    parallelism: int | None = None,
    chunk_time_limit_s: int | None = None,
    source: Job | None = None,
    schedule: Schedule | None = None,
) -> Schedule:
    """Create a schedule (`schedule` None) or replace one's definition, with its
    PeriodicTask; Rejected naming the field (`name`, `cron`, `every`, `unit`, `timezone`,
    `kind`, `params` by parameter, `parallelism`, `chunk_time_limit_s`, or `schedules`
    beyond COREBOARD_QUOTA_SCHEDULES) and nothing changed when the input is invalid.

    The parameters are validated as a job's would be; quotas are not checked here, but at
    every fire (a schedule is saved whatever its owner runs now)."""
    clean = _input_clean(
        owner=owner,
        name=name,
        kind=kind,
        params=params,
        parallelism=parallelism,
        chunk_time_limit_s=chunk_time_limit_s,
        timing=timing,
    )
    expiry = max(MIN_EXPIRY_S, timing_period_s(timing))
    with transaction.atomic():
        if schedule is None:
            # Counted under the owner's admission lock, so parallel creations never pass it.
            admission.person_lock(owner)
            limit = settings.COREBOARD_QUOTA_SCHEDULES
            if Schedule.objects.filter(owner=owner).count() >= limit:
                raise Rejected(
                    {
                        "schedules": [
                            f"At most {limit} schedules per person "
                            "(COREBOARD_QUOTA_SCHEDULES); delete one first."
                        ]
                    }
                )
            task = PeriodicTask(task=FIRE_TASK, name=f"coreboard-schedule-new-{timezone.now()}")
        else:
            task = PeriodicTask.objects.select_for_update().get(pk=schedule.periodic_task_id)
        for field, value in _timing_store(timing).items():
            setattr(task, field, value)
        was_enabled = task.pk is not None and task.enabled
        task.enabled = enabled
        if enabled and not was_enabled:
            # Resumes at its next time, with no catch-up fire for the time it was off.
            task.last_run_at = None
        task.expire_seconds = expiry
        # An interval has no time zone of its own: the one chosen is kept with the task
        # (jobs.selectors.schedules reads it back for the form).
        task.description = json.dumps({"timezone": timing.timezone})
        task.save()
        if schedule is None:
            schedule = Schedule(owner=owner, periodic_task=task, source=source)
        schedule.name = name.strip()
        schedule.kind = clean.kind
        schedule.params = clean.params
        schedule.parallelism = parallelism
        schedule.chunk_time_limit_s = clean.chunk_time_limit_s
        schedule.skip_if_active = bool(skip_if_active)
        schedule.save()
        # Its name in beat's table says whose it is (unique: the id).
        task.name = f"coreboard-schedule-{schedule.pk}"
        task.args = json.dumps([schedule.pk])
        task.save()
    return schedule


def schedule_set_enabled(*, schedule: Schedule, enabled: bool) -> Schedule:
    """Turn a schedule on or off. Turned on, it fires at its next time, never at once for
    the runs it missed while off."""
    with transaction.atomic():
        task = PeriodicTask.objects.select_for_update().get(pk=schedule.periodic_task_id)
        if task.enabled != enabled:
            task.enabled = enabled
            task.last_run_at = None
            task.save()
    schedule.refresh_from_db()
    return schedule


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete a schedule and its PeriodicTask; the runs it made stay in history."""
    with transaction.atomic():
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
        Schedule.objects.filter(pk=schedule.pk).delete()


def schedule_deleted(*, instance: Schedule, **signal: Any) -> None:
    """post_delete of a Schedule (also in a cascade from its owner): its PeriodicTask too,
    so beat stops firing it."""
    PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()


def schedules_stop_if_inactive(*, instance: Any, **signal: Any) -> None:
    """post_save of a user: a deactivated person's schedules are turned off (the fire runs
    on a worker, which may not read auth_user to check); turned on again by their owner."""
    if instance.is_active:
        return
    tasks = PeriodicTask.objects.filter(coreboard__owner_id=instance.pk, enabled=True)
    for task in tasks:
        task.enabled = False
        task.save()


def _owner_key(schedule: Schedule) -> Any:
    """The owner as its key alone (as jobs.services.studies does): the fire runs on a worker,
    whose database role may not read auth_user."""
    return get_user_model().from_db(schedule._state.db, ["id"], [schedule.owner_id])


def schedule_fire(*, schedule_id: int, fire_id: str = "") -> Job | None:
    """One fire of a schedule, on a worker: create its run, or record why not.

    Nothing happens for a schedule deleted or turned off since beat sent the fire, nor for a
    fire already handled (`fire_id`, the message's id, redelivered after a lost worker). A
    run refused (a quota, parameters no longer valid) or skipped (the previous run still
    active, when the schedule asks for that) is recorded as the schedule's last error, with
    its time, for its page and the API.
    """
    with transaction.atomic():
        schedule = (
            # Only the schedule's row: workers may read beat's table, not lock or write it.
            Schedule.objects.select_for_update(of=("self",))
            .select_related("periodic_task")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None or not schedule.periodic_task.enabled:
            return None
        if fire_id and schedule.last_fire_id == fire_id:
            return None
        now = timezone.now()
        schedule.last_fired_at = now
        schedule.last_fire_id = fire_id[:64]
        fields = ["last_fired_at", "last_fire_id", "last_error", "last_error_at"]
        if schedule.skip_if_active and (
            active := schedule.runs.filter(status__in=Job.ACTIVE_STATUSES).order_by("-pk").first()
        ):
            schedule.last_error = f"Skipped: the previous run (job {active.pk}) is still active."
            schedule.last_error_at = now
            schedule.save(update_fields=fields)
            return None
        try:
            job = job_create(
                owner=_owner_key(schedule),
                kind=schedule.kind,
                params=schedule.params,
                parallelism=schedule.parallelism,
                chunk_time_limit_s=schedule.chunk_time_limit_s,
                schedule=schedule,
                by=None,
            )
        except (Rejected, RateLimited) as refusal:
            schedule.last_error = f"Not run: {refusal_text(refusal)}"
            schedule.last_error_at = now
            schedule.save(update_fields=fields)
            return None
        # The last refusal stays (with its time) after a run succeeds: the page says both.
        schedule.save(update_fields=["last_fired_at", "last_fire_id"])
        return job


def refusal_text(refusal: Rejected | RateLimited) -> str:
    """A refusal in one line, as the pages would show it."""
    return " ".join(refusal.messages)
