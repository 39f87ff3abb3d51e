"""Celery adapters of the services (the engine's own are in jobs.engine.tasks): an id in, a
service call, no business rules."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import OperationalError

from jobs.services import schedules


# acks_late: a worker lost before the fire committed leaves the message to run again; one
# lost after it committed gets a redelivery that `schedule_fire` recognises by its id and
# drops. A database that does not answer is retried (with backoff) within the fire's
# expiry, which beat sets to the schedule's period (jobs.services.schedules).
@shared_task(
    name=schedules.FIRE_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def schedule_fire(self: Task[[int], None], schedule_id: int) -> None:
    schedules.schedule_fire(schedule_id=schedule_id, fire_id=self.request.id or "")
