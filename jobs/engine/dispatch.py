"""Execution slots: how many Celery messages work on a job, and keeping that number right.

A slot is one Celery message (`jobs.tasks.slot_run`) that, in a prefork child, claims and
runs a job's chunks until the job has nothing left or its time slice ends. A job gets up
to `parallelism` slots (0: as many as there are), never more than the live worker
processes that have its kind (so one job cannot put hours of messages ahead of everybody
else's on a FIFO queue), and at most COREBOARD_OWNER_MAX_SLOTS per owner when that is set.

Slots go to their kind's queue (`kind_queue`), and each worker consumes the queues of the
kinds it has (it advertises them in the worker registry, jobs.engine.workers), so a worker
never receives work it cannot run; a job whose kind no live worker has gets no slot and
waits. Sent slots are registered in jobs.engine.slot_registry; the reconciler
(jobs.engine.reconciler) tops up every active job with this module, so a lost message or
machine costs seconds, not a stuck job.

Priorities are Celery's own message priorities on the Redis transport: a slot message
carries its job's `broker_priority` (kombu's, where 0 comes first), each queue is a list
per priority step, and a worker's BRPOP names the steps first to last, so a higher
priority's slots are taken before lower ones on every queue it consumes. A slot that
waited COREBOARD_PRIORITY_AGING_S in its queue moves up a step (`slots_age`), so no job
starves behind a stream of higher ones.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from jobs.engine import redis_clients, workers
from jobs.engine.slot_registry import (
    slot_forget_if_unchanged,
    slot_raise,
    slot_send,
    slots_of,
)
from jobs.models import Chunk, Job

logger = logging.getLogger(__name__)

KIND_QUEUE_PREFIX = "coreboard.kind."


def kind_queue(kind: str) -> str:
    """The broker queue that slots of `kind` go to (COREBOARD_KIND_QUEUES routes kinds)."""
    return settings.COREBOARD_KIND_QUEUES.get(kind) or f"{KIND_QUEUE_PREFIX}{kind}"


def worker_kind_queues(worker_kinds: Iterable[str]) -> list[str]:
    """The queues a worker with these kinds consumes (besides its default or -Q ones)."""
    return sorted({kind_queue(kind) for kind in worker_kinds})


# --- how many slots a job should have --------------------------------------------------------


# --- priorities --------------------------------------------------------------------------------

# Job.Priority → kombu's message priority on the Redis transport (0 first; its default
# priority_steps, CELERY_BROKER_TRANSPORT_OPTIONS', are exactly these).
BROKER_PRIORITIES: dict[int, int] = {
    Job.Priority.URGENT: 0,
    Job.Priority.HIGH: 3,
    Job.Priority.NORMAL: 6,
    Job.Priority.LOW: 9,
}
PRIORITY_STEPS: tuple[int, ...] = tuple(sorted(BROKER_PRIORITIES.values()))
NORMAL_BROKER_PRIORITY = BROKER_PRIORITIES[Job.Priority.NORMAL]


def broker_priority(priority: int) -> int:
    """The message priority a job of `priority` sends its slots with."""
    return BROKER_PRIORITIES[priority]


def broker_priority_raised(step: int) -> int:
    """The next step up from `step` (the first stays)."""
    higher = [each for each in PRIORITY_STEPS if each < step]
    return higher[-1] if higher else PRIORITY_STEPS[0]


def claimable_chunks() -> Q:
    return Q(status=Chunk.Status.PENDING) & (
        Q(retry_at__isnull=True) | Q(retry_at__lte=timezone.now())
    )


def job_dispatch(*, job_id: int) -> int:
    """Send the slots an active job is missing; the number sent. Best effort: when the
    broker is unreachable nothing is sent and the reconciler tries again later."""
    try:
        return jobs_top_up([job_id])
    except (redis.RedisError, OSError, DatabaseError) as error:
        logger.warning("could not dispatch job %s now (%s); the reconciler will", job_id, error)
        return 0


def jobs_top_up(job_ids: Iterable[int]) -> int:
    """Send the slots these jobs (the active ones with claimable chunks) are missing,
    higher priorities first (an owner's cap then goes to their most urgent work)."""
    claimable = Chunk.objects.filter(claimable_chunks(), job_id=OuterRef("pk"))
    jobs = list(
        Job.objects.filter(pk__in=list(job_ids), status__in=Job.ACTIVE_STATUSES)
        .filter(Exists(claimable))
        .order_by("-priority", "created_at", "pk")
        .values_list("pk", "kind", "parallelism", "owner_id", "priority")
    )
    if not jobs:
        return 0
    live = workers.live_workers(redis_clients.broker())
    live_nodes = set(live)
    now = time.time()
    holders = _lease_holders([job_id for job_id, *_ in jobs])
    live_by_job = {
        job_id: _live_slots(job_id, now, live_nodes, holders.get(job_id, set()))
        for job_id, *_ in jobs
    }
    owner_cap = settings.COREBOARD_OWNER_MAX_SLOTS
    owner_live: dict[int, int] = {}
    if owner_cap:
        for owner_id in {owner for _, _, _, owner, _ in jobs}:
            owner_live[owner_id] = _owner_live_slots(owner_id, now, live_nodes)
    sent = 0
    for job_id, kind, parallelism, owner_id, priority in jobs:
        wanted = (
            job_slots_wanted(parallelism, workers.kind_capacity(live, kind)) - live_by_job[job_id]
        )
        if owner_cap:
            wanted = min(wanted, owner_cap - owner_live[owner_id])
        pending = Chunk.objects.filter(claimable_chunks(), job_id=job_id)[: max(wanted, 0)]
        wanted = min(wanted, pending.count())
        for _ in range(max(wanted, 0)):
            slot_send(job_id, uuid.uuid4().hex, kind_queue(kind), broker_priority(priority))
            sent += 1
            if owner_cap:
                owner_live[owner_id] += 1
    return sent


def job_slots_wanted(parallelism: int, capacity: int) -> int:
    """Slots a job should have: its parallelism (0: all), never more than the live processes
    that can run it (none when no live worker has its kind: the job waits)."""
    return capacity if parallelism == 0 else min(parallelism, capacity)


def _live_slots(job_id: int, now: float, live_nodes: set[str], holders: set[str]) -> int:
    """Live slots of a job; entries found lost are removed. A process that holds the job's
    chunks under a live lease without a live running entry counts too: a slot whose entry
    Redis lost (FLUSHALL) finishes its batch before it stops, and a new slot sent meanwhile
    would run beside it."""
    live = 0
    running: set[str] = set()
    for state in slots_of(job_id):
        if state.is_live(now=now, live_nodes=live_nodes):
            live += 1
            running.add(state.process)
        else:
            slot_forget_if_unchanged(job_id, state)
    return live + len(holders - running)


def _lease_holders(job_ids: list[int]) -> dict[int, set[str]]:
    """The processes holding each job's chunks under a live lease."""
    holders: dict[int, set[str]] = {}
    rows = (
        Chunk.objects.filter(
            job_id__in=job_ids, status=Chunk.Status.RUNNING, lease_expires_at__gt=timezone.now()
        )
        .values_list("job_id", "lease_owner")
        .distinct()
    )
    for job_id, owner in rows:
        holders.setdefault(job_id, set()).add(owner)
    return holders


def _owner_live_slots(owner_id: int, now: float, live_nodes: set[str]) -> int:
    active = list(
        Job.objects.filter(owner_id=owner_id, status__in=Job.ACTIVE_STATUSES).values_list(
            "pk", flat=True
        )
    )
    holders = _lease_holders(active)
    return sum(
        _live_slots(job_id, now, live_nodes, holders.get(job_id, set())) for job_id in active
    )


def slots_age(job_ids: Iterable[int]) -> int:
    """Move up a step every slot of these jobs that waited COREBOARD_PRIORITY_AGING_S in
    its queue (so a normal job still finishes while high ones keep arriving); how many.

    A waiting message cannot be reordered in Redis: the slot is sent again under a new
    token one step up, and the old message, whose token is gone, does nothing when it is
    taken (jobs.engine.slot_registry.slot_raise)."""
    aging_s = settings.COREBOARD_PRIORITY_AGING_S
    ids = list(job_ids)
    if not aging_s or not ids:
        return 0
    kinds = dict(Job.objects.filter(pk__in=ids).values_list("pk", "kind"))
    now = time.time()
    raised = 0
    for job_id, kind in kinds.items():
        for state in slots_of(job_id):
            step = state.queued_step
            if step is None or step == PRIORITY_STEPS[0] or now - state.queued_at < aging_s:
                continue
            raised += slot_raise(
                job_id, state, uuid.uuid4().hex, kind_queue(kind), broker_priority_raised(step)
            )
    return raised
