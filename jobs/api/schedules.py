"""JSON API of schedules: a person's own, created from parameters or a job, changed, turned on
or off (PATCH `enabled`), deleted."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api import openapi
from jobs.forms import schedule_input
from jobs.models import Job, Schedule
from jobs.selectors import jobs as job_selectors
from jobs.selectors import schedules as selectors
from jobs.services import Rejected, schedules

NEW_SCHEDULE: dict[str, Any] = {
    "name": "",
    "kind": "",
    "params": {},
    "parallelism": None,
    "chunk_time_limit_s": None,
    "cron": None,
    "every": None,
    "unit": "minutes",
    "timezone": "UTC",
    "enabled": True,
    "skip_if_active": False,
}


def _parsed(data: Any, current: dict[str, Any]) -> dict[str, Any]:
    try:
        return schedule_input(data, current=current)
    except ValidationError as error:
        raise Rejected(error.message_dict) from None


def schedule_write(
    *, owner: Any, values: dict[str, Any], schedule: Schedule | None, source: Job | None
) -> Schedule:
    """Save `values` (the API's fields) through the service."""
    return schedules.schedule_save(
        owner=owner,
        name=values["name"],
        kind=values["kind"],
        params=values["params"],
        timing=selectors.Timing(
            cron=values["cron"] or "",
            every=values["every"],
            unit=values["unit"] or "minutes",
            timezone=values["timezone"],
        ),
        enabled=values["enabled"],
        skip_if_active=values["skip_if_active"],
        parallelism=values["parallelism"],
        chunk_time_limit_s=values["chunk_time_limit_s"],
        source=source,
        schedule=schedule,
    )


def schedule_values(schedule: Schedule) -> dict[str, Any]:
    """A stored schedule as the API's fields (what a PATCH changes)."""
    state = selectors.schedule_as_dict(schedule)
    return {name: state[name] for name in NEW_SCHEDULE}  # type: ignore[literal-required]


class ScheduleListCreate(GenericAPIView[Any]):
    serializer_class = openapi.ScheduleOut

    @openapi.schedule_list
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.schedules_of(request.user)) or []
        return self.get_paginated_response([selectors.schedule_as_dict(s) for s in page])

    @openapi.schedule_create
    def post(self, request: Request) -> Response:
        data = request.data
        source = None
        current = dict(NEW_SCHEDULE)
        if isinstance(data, dict) and "job" in data:
            data = dict(data)
            job_id = data.pop("job")
            if isinstance(job_id, bool) or not isinstance(job_id, int):
                raise Rejected({"job": ["Must be the id (an integer) of a job."]})
            try:
                source = job_selectors.job_get_for_user(user=request.user, job_id=job_id)
            except Http404:
                raise Rejected({"job": [f"No job with id {job_id} of yours."]}) from None
            if source.owner_id != request.user.pk:
                raise Rejected({"job": [f"No job with id {job_id} of yours."]})
            current |= {
                "name": f"{source.kind} (from job {source.pk})",
                "kind": source.kind,
                "params": source.params,
                "parallelism": source.parallelism,
                "chunk_time_limit_s": source.chunk_time_limit_s,
            }
        values = _parsed(data, current)
        schedule = schedule_write(owner=request.user, values=values, schedule=None, source=source)
        fresh = selectors.schedule_get_for_user(user=request.user, schedule_id=schedule.pk)
        return Response(
            selectors.schedule_as_dict(fresh or schedule), status=status.HTTP_201_CREATED
        )


class ScheduleDetail(GenericAPIView[Any]):
    serializer_class = openapi.ScheduleOut

    def get_schedule(self, schedule_id: int) -> Schedule:
        schedule = selectors.schedule_get_for_user(user=self.request.user, schedule_id=schedule_id)
        if schedule is None:
            raise Http404
        return schedule

    @openapi.schedule_retrieve
    def get(self, request: Request, schedule_id: int) -> Response:
        return Response(selectors.schedule_as_dict(self.get_schedule(schedule_id)))

    @openapi.schedule_update
    def patch(self, request: Request, schedule_id: int) -> Response:
        schedule = self.get_schedule(schedule_id)
        values = _parsed(request.data, schedule_values(schedule))
        schedule_write(owner=request.user, values=values, schedule=schedule, source=None)
        return Response(selectors.schedule_as_dict(self.get_schedule(schedule_id)))

    @openapi.schedule_delete
    def delete(self, request: Request, schedule_id: int) -> Response:
        schedules.schedule_delete(schedule=self.get_schedule(schedule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
