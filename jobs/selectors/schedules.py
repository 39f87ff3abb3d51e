"""Reading schedules: a person's own, and the one shape of a schedule (jobs.protocol)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from jobs import protocol
from jobs.models import Schedule


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: a cron expression (minute hour day-of-month month day-of-week,
    read in `timezone`) or an interval of `every` `unit` (which time zones do not change)."""

    cron: str = ""
    every: int | None = None
    unit: str = "minutes"
    timezone: str = "UTC"


def schedules_of(user: Any) -> QuerySet[Schedule]:
    """A person's own schedules, newest first; private, also from staff (their runs, like
    every job, stay visible to staff on the job pages)."""
    if not user.is_authenticated:
        return Schedule.objects.none()
    return (
        Schedule.objects.filter(owner_id=user.pk)
        .select_related("periodic_task__interval", "periodic_task__crontab")
        .annotate(run_count=Count("runs"), newest_run=Max("runs"))
        # Meta.ordering does not apply to an aggregating query.
        .order_by("-created_at", "-id")
    )


def schedule_get_for_user(*, user: Any, schedule_id: int) -> Schedule | None:
    return schedules_of(user).filter(pk=schedule_id).first()


def schedule_timing(schedule: Schedule) -> Timing:
    """A stored schedule's timing, read back from its PeriodicTask."""
    task = schedule.periodic_task
    try:
        zone = str(json.loads(task.description or "{}").get("timezone", "UTC"))
    except ValueError:
        zone = "UTC"
    if task.interval is not None:
        return Timing(every=task.interval.every, unit=task.interval.period, timezone=zone)
    cron = task.crontab
    if cron is None:
        raise ValueError(f"schedule {schedule.pk} has neither an interval nor a crontab")
    fields = (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week)
    return Timing(cron=" ".join(fields), timezone=str(cron.timezone))


def schedule_next_run(schedule: Schedule) -> datetime | None:
    """When beat fires it next: its period after its last fire (or after it was saved or
    turned on), or now if that is past; None while off."""
    task = schedule.periodic_task
    if not task.enabled:
        return None
    last = task.last_run_at or task.date_changed
    now = timezone.now()
    if last is None:
        return now
    timing = task.schedule
    # Reckoned at one instant: celery's schedules read their own clock otherwise.
    zone = getattr(timing, "tz", None)
    timing.nowfun = (lambda: now.astimezone(zone)) if zone else (lambda: now)
    remaining: timedelta = timing.remaining_estimate(last)
    return max(now, now + remaining)


def schedule_as_dict(schedule: Schedule) -> protocol.ScheduleState:
    """The one shape of a schedule, for its page and the API."""
    timing = schedule_timing(schedule)
    counted = hasattr(schedule, "run_count")
    annotated: Any = schedule
    return protocol.schedule_state(
        schedule,
        cron=timing.cron or None,
        every=timing.every,
        unit=timing.unit if timing.every is not None else None,
        timezone=timing.timezone,
        enabled=schedule.periodic_task.enabled,
        next_run_at=schedule_next_run(schedule),
        runs=annotated.run_count if counted else schedule.runs.count(),
        last_run=(
            annotated.newest_run
            if counted
            else schedule.runs.order_by("-pk").values_list("pk", flat=True).first()
        ),
    )
