"""Execution slots: how many Celery messages work on a job, and keeping that number right.

A slot is one Celery message (`jobs.tasks.slot_run`) that, in a prefork child, claims and
runs a job's chunks until the job has nothing left or its time slice ends. A job gets up
to `parallelism` slots (0: as many as there are), never more than the live worker
processes that have its kind (so one job cannot put hours of messages ahead of everybody
else's on a FIFO queue), and at most COREBOARD_OWNER_MAX_SLOTS per owner when that is set.

Slots go to their kind's queue (`kind_queue`), and each worker consumes the queues of the
kinds it has (it advertises them in the worker registry), so a worker never receives work
it cannot run; a job whose kind no live worker has gets no slot and waits.

Every slot is registered, by a random token, in a Redis hash per job that lives in the
broker's database, so it shares the fate of the messages: when Redis loses its data,
the registry is lost with the messages it described. A slot's state is `q` (sent),
`v|<node>` (reserved by a worker) or `r|<node>|<process>|<time>` (running, refreshed every
second). A slot counts as live while it is queued, reserved by a worker whose main process
still beats, or running with a fresh refresh. The reconciler (one thread in every worker's
main process, one of them at a time under a Redis lock) tops up the slots of active jobs
with claimable chunks and returns expired leases to pending, so a lost message or machine
costs seconds, not a stuck job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import psutil
import redis
from celery import current_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from jobs import kinds
from jobs.engine import redis_clients, signals
from jobs.engine.chunks import jobs_finish_idle, leases_reap, leases_release
from jobs.models import Chunk, Job

logger = logging.getLogger(__name__)

SLOT_TASK = "jobs.tasks.slot_run"
WORKERS = "coreboard:workers"
WORKERS_CONCURRENCY = "coreboard:workers:concurrency"
# The process (host|pid|boot) behind each node name, so a second worker with a live node's
# name is told apart and refused (jobs.engine.preflight).
WORKERS_OWNER = "coreboard:workers:owner"
WORKERS_KINDS = "coreboard:workers:kinds"
KIND_QUEUE_PREFIX = "coreboard.kind."
RECONCILER_LOCK = "coreboard:reconciler"
# A running slot refreshes its entry every second; one silent for this long is lost.
SLOT_STALE_S = 5.0
WORKER_STALE_S = 5.0
REGISTRY_TTL_S = 7 * 24 * 3600

_SET_IF_EXISTS = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""
# Register `node` for `owner` unless another owner's entry for it is live: that owner.
_WORKER_CLAIM = """
local beat = redis.call('zscore', KEYS[1], ARGV[1])
local owner = redis.call('hget', KEYS[2], ARGV[1])
if beat and tonumber(beat) > tonumber(ARGV[3]) and owner ~= ARGV[2] and ARGV[5] == '0' then
  return owner or '?'
end
if ARGV[6] == '1' then
  return false
end
redis.call('zadd', KEYS[1], ARGV[4], ARGV[1])
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
return false
"""
_DEL_IF_EQUAL = """
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('hdel', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# Take a slot over from `expected` (its current state) only if it is still that.
_SWAP = """
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


def registry_key(job_id: int) -> str:
    return f"coreboard:slots:{job_id}"


def broker_client() -> redis.Redis:
    """A Redis client on the broker's database (per process)."""
    return redis_clients.for_url(settings.CELERY_BROKER_URL)


@cache
def boot_id() -> str:
    """Tells machines with the same host name apart (and one machine's boots)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()[:8]
    except OSError:
        return "0"


def process_id(pid: int | None = None) -> str:
    """This process as a lease owner: host, pid and boot, e.g. `node1|4242|a1b2c3d4`."""
    return f"{socket.gethostname()}|{pid or os.getpid()}|{boot_id()}"


def owner_host(owner: str) -> str:
    """The host name of a lease owner (`process_id`)."""
    return owner.partition("|")[0]


def process_is_gone(owner: str) -> bool:
    """True when `owner` names a process of this machine that no longer exists."""
    host, _, rest = owner.partition("|")
    pid, _, boot = rest.partition("|")
    if host != socket.gethostname() or boot != boot_id() or not pid.isdigit():
        return False
    return not psutil.pid_exists(int(pid))


# --- the registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotState:
    token: str
    value: str

    @property
    def kind(self) -> str:
        return self.value.split("|", 1)[0]

    @property
    def owner(self) -> str:
        """The running process (`r` states), as a lease owner."""
        parts = self.value.split("|")
        return "|".join(parts[2:5]) if self.kind == "r" and len(parts) >= 6 else ""

    def is_live(self, *, now: float, live_workers: set[str]) -> bool:
        parts = self.value.split("|")
        if self.kind == "q":
            return True
        if self.kind == "v":
            return len(parts) > 1 and parts[1] in live_workers
        if self.kind == "r":
            try:
                return now - float(parts[-1]) < SLOT_STALE_S
            except ValueError:
                return False
        return False


def running_state(node: str, owner: str) -> str:
    return f"r|{node}|{owner}|{time.time():.3f}"


def slots_of(job_id: int) -> list[SlotState]:
    values: dict[str, str] = broker_client().hgetall(registry_key(job_id))  # type: ignore[assignment]
    return [SlotState(token, value) for token, value in values.items()]


@dataclass(frozen=True)
class LiveWorker:
    """A worker node whose main process beat recently: its processes and its kinds."""

    concurrency: int
    kinds: frozenset[str]


def live_workers(client: redis.Redis | None = None) -> dict[str, LiveWorker]:
    """Worker nodes whose main process beat recently, with their process counts and kinds."""
    client = client or broker_client()
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(WORKERS, time.time() - WORKER_STALE_S, "+inf")
    pipe.hgetall(WORKERS_CONCURRENCY)
    pipe.hgetall(WORKERS_KINDS)
    nodes, concurrency, kinds_of = pipe.execute()
    return {
        node: LiveWorker(
            concurrency=int(concurrency.get(node) or 1),
            kinds=frozenset(filter(None, (kinds_of.get(node) or "").split(","))),
        )
        for node in nodes
    }


def workers_seen(client: redis.Redis | None = None) -> dict[str, float]:
    """Every worker node of the last hour, live or not, with the time of its last beat."""
    client = client or broker_client()
    seen: list[tuple[str, float]] = client.zrange(WORKERS, 0, -1, withscores=True)  # type: ignore[assignment]
    return dict(seen)


def kind_capacity(workers: dict[str, LiveWorker], kind: str) -> int:
    """Live worker processes that can run `kind`."""
    return sum(worker.concurrency for worker in workers.values() if kind in worker.kinds)


def kind_queue(kind: str) -> str:
    """The broker queue that slots of `kind` go to (COREBOARD_KIND_QUEUES routes kinds)."""
    return settings.COREBOARD_KIND_QUEUES.get(kind) or f"{KIND_QUEUE_PREFIX}{kind}"


def worker_kinds() -> frozenset[str]:
    """The kinds this worker runs: every kind registered in its process (built-in and
    COREBOARD_JOB_KINDS), or only those named in COREBOARD_WORKER_KINDS."""
    registered = {kind.name for kind in kinds.all_kinds()}
    wanted = set(settings.COREBOARD_WORKER_KINDS)
    if not wanted:
        return frozenset(registered)
    if unknown := sorted(wanted - registered):
        raise ImproperlyConfigured(
            f"COREBOARD_WORKER_KINDS names kinds this worker does not have: "
            f"{', '.join(unknown)} (it has: {', '.join(sorted(registered))}; add their "
            f"modules to COREBOARD_JOB_KINDS)."
        )
    return frozenset(wanted)


def worker_kind_queues(worker_kinds: Iterable[str]) -> list[str]:
    """The queues a worker with these kinds consumes (besides its default or -Q ones)."""
    return sorted({kind_queue(kind) for kind in worker_kinds})


def slot_send(job_id: int, token: str, queue: str) -> None:
    """Queue one slot message on `queue` (its kind's): registered first, so a worker never
    finds it unknown."""
    key = registry_key(job_id)
    client = broker_client()
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, token, f"q|{time.time():.3f}")
    pipe.expire(key, REGISTRY_TTL_S)
    pipe.execute()
    try:
        current_app.send_task(SLOT_TASK, args=[job_id, token], queue=queue)
    except Exception:
        client.hdel(key, token)
        raise


def slot_reserved(job_id: int, token: str, node: str) -> None:
    """A worker took the slot's message off the queue (it may wait there for a process)."""
    broker_client().eval(_SET_IF_EXISTS, 1, registry_key(job_id), token, f"v|{node}")


def slot_begin(job_id: int, token: str, node: str, owner: str) -> bool:
    """Mark the slot running in this process; False if it must not run.

    A message whose slot is not registered is stale (replaced after being given up for
    lost, or its job is over). A slot running in another live process stays there; one
    whose process on this machine is gone (killed, its message redelivered) is taken over
    and that process's chunks are handed back at once.
    """
    client = broker_client()
    key = registry_key(job_id)
    current = client.hget(key, token)
    if current is None:
        return False
    state = SlotState(token, str(current))
    if state.kind == "r" and state.owner != owner:
        fresh = state.is_live(now=time.time(), live_workers=set())
        if fresh and not process_is_gone(state.owner):
            return False
        if state.owner:
            leases_release(owner=state.owner)
    return bool(client.eval(_SWAP, 1, key, token, state.value, running_state(node, owner)))


def slot_refresh(job_id: int, token: str, node: str, owner: str) -> None:
    broker_client().eval(_SET_IF_EXISTS, 1, registry_key(job_id), token, running_state(node, owner))


def slot_end(job_id: int, token: str) -> None:
    try:
        broker_client().hdel(registry_key(job_id), token)
    except redis.RedisError:
        # Unregistered or not, the reconciler sees to the job's slots.
        logger.warning("could not unregister a slot of job %s", job_id)


def slot_requeue(job_id: int, token: str, queue: str) -> bool:
    """Put the slot back at the end of its queue (its time slice is over)."""
    try:
        slot_send(job_id, token, queue)
    except Exception:
        logger.warning("could not requeue slot of job %s; it keeps running", job_id)
        return False
    return True


def draining_key(node: str) -> str:
    return f"coreboard:worker:{node}:draining"


def slot_should_yield(node: str, queues: Iterable[str] = ()) -> bool:
    """Whether a slot whose time slice is over should give its process back: other
    messages wait on a queue its worker consumes (`queues`: its kinds' queues and its
    default or -Q ones; kombu keeps priority 0 under the queue's own name), so they could
    run in this process, or its worker is shutting down (then the re-queued slot runs
    elsewhere or later)."""
    names = sorted(set(queues) or {settings.CELERY_TASK_DEFAULT_QUEUE})
    try:
        pipe = broker_client().pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        pipe.exists(draining_key(node))
        *waiting, draining = pipe.execute()
    except redis.RedisError:
        return False
    return bool(any(waiting) or draining)


def worker_draining(node: str, *, draining: bool) -> None:
    """A worker's warm shutdown began (or it started afresh): its slots stop at their next
    chunk boundary instead of claiming more, so the shutdown waits for one chunk only."""
    try:
        if draining:
            broker_client().set(draining_key(node), "1", ex=3600)
        else:
            broker_client().delete(draining_key(node))
    except redis.RedisError:
        logger.warning("could not mark worker %s draining=%s", node, draining)


def worker_is_draining(node: str) -> bool:
    """Whether `node` is draining (an operator's drain or a warm shutdown): its slots run
    no further chunks. A Redis error reads as not draining (the work goes on)."""
    try:
        return bool(broker_client().exists(draining_key(node)))
    except redis.RedisError:
        return False


# --- how many slots a job should have --------------------------------------------------------


def claimable_chunks() -> Q:
    return Q(status=Chunk.Status.PENDING) & (
        Q(retry_at__isnull=True) | Q(retry_at__lte=timezone.now())
    )


def job_dispatch(*, job_id: int) -> int:
    """Send the slots an active job is missing; the number sent. Best effort: when the
    broker is unreachable nothing is sent and the reconciler tries again later."""
    try:
        return _jobs_top_up([job_id])
    except (redis.RedisError, OSError, DatabaseError) as error:
        logger.warning("could not dispatch job %s now (%s); the reconciler will", job_id, error)
        return 0


def _jobs_top_up(job_ids: Iterable[int]) -> int:
    claimable = Chunk.objects.filter(claimable_chunks(), job_id=OuterRef("pk"))
    jobs = list(
        Job.objects.filter(pk__in=list(job_ids), status__in=Job.ACTIVE_STATUSES)
        .filter(Exists(claimable))
        .order_by("created_at", "pk")
        .values_list("pk", "kind", "parallelism", "owner_id")
    )
    if not jobs:
        return 0
    client = broker_client()
    workers = live_workers(client)
    now = time.time()
    live_by_job = {job_id: _live_slots(job_id, now, set(workers)) for job_id, *_ in jobs}
    owner_cap = settings.COREBOARD_OWNER_MAX_SLOTS
    owner_live: dict[int, int] = {}
    if owner_cap:
        for owner_id in {owner for *_, owner in jobs}:
            owner_live[owner_id] = _owner_live_slots(owner_id, now, set(workers))
    sent = 0
    for job_id, kind, parallelism, owner_id in jobs:
        wanted = job_slots_wanted(parallelism, kind_capacity(workers, kind)) - live_by_job[job_id]
        if owner_cap:
            wanted = min(wanted, owner_cap - owner_live[owner_id])
        pending = Chunk.objects.filter(claimable_chunks(), job_id=job_id)[: max(wanted, 0)]
        wanted = min(wanted, pending.count())
        for _ in range(max(wanted, 0)):
            slot_send(job_id, uuid.uuid4().hex, kind_queue(kind))
            sent += 1
            if owner_cap:
                owner_live[owner_id] += 1
    return sent


def job_slots_wanted(parallelism: int, capacity: int) -> int:
    """Slots a job should have: its parallelism (0: all), never more than the live processes
    that can run it (none when no live worker has its kind: the job waits)."""
    return capacity if parallelism == 0 else min(parallelism, capacity)


def _live_slots(job_id: int, now: float, workers: set[str]) -> int:
    """Live slots of a job; entries found lost are removed (their messages, if they ever
    turn up, then do nothing)."""
    live = 0
    client = broker_client()
    for state in slots_of(job_id):
        if state.is_live(now=now, live_workers=workers):
            live += 1
        else:
            client.eval(_DEL_IF_EQUAL, 1, registry_key(job_id), state.token, state.value)
    return live


def _owner_live_slots(owner_id: int, now: float, workers: set[str]) -> int:
    active = Job.objects.filter(owner_id=owner_id, status__in=Job.ACTIVE_STATUSES)
    return sum(_live_slots(job_id, now, workers) for job_id in active.values_list("pk", flat=True))


# --- the reconciler ---------------------------------------------------------------------------


def reconcile() -> int:
    """One pass: expired leases back to pending, jobs with nothing left to run finished
    (a retried combine), scaling studies moved to their next run, missing slots sent; the
    number of slots sent."""
    leases_reap()
    jobs_finish_idle()
    signals.reconciler_pass.send(sender=None)
    active = Job.objects.filter(status__in=Job.ACTIVE_STATUSES).values_list("pk", flat=True)
    return _jobs_top_up(active)


def leases_release_local() -> None:
    """Hand back at once the chunks of this machine's worker processes that are gone
    (a killed prefork child), instead of waiting for their leases to expire."""
    prefix = f"{socket.gethostname()}|"
    owners = (
        Chunk.objects.filter(status=Chunk.Status.RUNNING, lease_owner__startswith=prefix)
        .values_list("lease_owner", flat=True)
        .distinct()
    )
    for owner in list(owners):
        if process_is_gone(owner):
            leases_release(owner=owner)


def worker_claim(
    node: str, *, owner: str, take_over: bool = False, check_only: bool = False
) -> str | None:
    """Register this worker's main process (`owner`) as `node`; None when done, or the owner
    of the live node of that name that stands in the way (nothing is then changed).
    `take_over` replaces an entry whose process is known to be gone; `check_only` looks
    without registering."""
    now = time.time()
    result = broker_client().eval(
        _WORKER_CLAIM,
        2,
        WORKERS,
        WORKERS_OWNER,
        node,
        owner,
        now - WORKER_STALE_S,
        now,
        "1" if take_over else "0",
        "1" if check_only else "0",
    )
    return None if result is None else str(result)


def worker_beat(node: str, concurrency: int, worker_kinds: Iterable[str]) -> None:
    client = broker_client()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(WORKERS, {node: time.time()})
    pipe.hset(WORKERS_CONCURRENCY, node, concurrency)
    pipe.hset(WORKERS_OWNER, node, process_id())
    pipe.hset(WORKERS_KINDS, node, ",".join(sorted(worker_kinds)))
    pipe.zremrangebyscore(WORKERS, 0, time.time() - 3600)
    pipe.execute()


def worker_forget(node: str) -> None:
    try:
        pipe = broker_client().pipeline(transaction=False)
        pipe.zrem(WORKERS, node)
        pipe.hdel(WORKERS_CONCURRENCY, node)
        pipe.hdel(WORKERS_OWNER, node)
        pipe.hdel(WORKERS_KINDS, node)
        pipe.execute()
    except redis.RedisError:
        logger.warning("could not remove worker %s from the registry", node)


def start_reconciler(node: str, concurrency: int, worker_kinds: Iterable[str]) -> None:
    """In each worker's main process: beat (with its processes and kinds), hand back lost
    local chunks, and reconcile (one machine at a time) every COREBOARD_RECONCILE_MS."""
    worker_kinds = sorted(worker_kinds)
    period = settings.COREBOARD_RECONCILE_MS / 1000

    def run() -> None:
        while True:
            began = time.monotonic()
            try:
                close_old_connections()
                with connection.cursor() as cursor:
                    # Housekeeping never waits long for a lock: whatever holds one (a slot
                    # recording its batch, a TRUNCATE) goes first, and the next pass retries.
                    cursor.execute("SET lock_timeout = '250ms'")
                worker_beat(node, concurrency, worker_kinds)
                leases_release_local()
                lock = broker_client().set(
                    RECONCILER_LOCK, node, nx=True, px=max(int(period * 900), 100)
                )
                if lock:
                    reconcile()
            except (redis.RedisError, OSError, DatabaseError) as error:
                logger.warning("reconciler: %s", error)
                connection.close()
            except Exception:
                logger.exception("reconciler pass failed")
            time.sleep(max(period - (time.monotonic() - began), 0.05))

    threading.Thread(target=run, name="coreboard-reconciler", daemon=True).start()
