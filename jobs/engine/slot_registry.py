"""The slot registry: every slot message a job has, by a random token, in a Redis hash per
job in the broker's database.

It shares the fate of the messages: when Redis loses its data, the registry is lost with
the messages it described. A slot's state has a phase: `q` (sent), `v|<node>` (reserved by
a worker) or `r|<node>|<process>|<time>` (running, refreshed every HEARTBEAT_S). A slot
counts as live while it is queued, reserved by a node that still beats, or running with
a refresh younger than LOST_AFTER_S (jobs.engine.workers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from celery import current_app
from django.conf import settings

from jobs.engine import redis_clients, workers
from jobs.engine.chunks import leases_release

logger = logging.getLogger(__name__)

SLOT_TASK = "jobs.tasks.slot_run"
REGISTRY_TTL_S = 7 * 24 * 3600

_SET_IF_EXISTS = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
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


@dataclass(frozen=True)
class SlotState:
    token: str
    value: str

    @property
    def phase(self) -> str:
        """`q` (queued), `v` (reserved by a worker) or `r` (running)."""
        return self.value.split("|", 1)[0]

    @property
    def process(self) -> str:
        """The running process (`r` states), a workers.process_id."""
        parts = self.value.split("|")
        return "|".join(parts[2:5]) if self.phase == "r" and len(parts) >= 6 else ""

    def is_live(self, *, now: float, live_nodes: set[str]) -> bool:
        parts = self.value.split("|")
        if self.phase == "q":
            return True
        if self.phase == "v":
            return len(parts) > 1 and parts[1] in live_nodes
        if self.phase == "r":
            try:
                return not workers.is_lost(float(parts[-1]), now=now)
            except ValueError:
                return False
        return False


def running_state(node: str, process: str) -> str:
    return f"r|{node}|{process}|{time.time():.3f}"


def slots_of(job_id: int) -> list[SlotState]:
    values: dict[str, str] = redis_clients.broker().hgetall(registry_key(job_id))  # type: ignore[assignment]
    return [SlotState(token, value) for token, value in values.items()]


def slot_send(job_id: int, token: str, queue: str) -> None:
    """Queue one slot message on `queue` (its kind's): registered first, so a worker never
    finds it unknown."""
    key = registry_key(job_id)
    client = redis_clients.broker()
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
    redis_clients.broker().eval(_SET_IF_EXISTS, 1, registry_key(job_id), token, f"v|{node}")


def slot_begin(job_id: int, token: str, node: str, process: str) -> bool:
    """Mark the slot running in this process; False if it must not run.

    A message whose slot is not registered is stale (replaced after being given up for
    lost, or its job is over). A slot running in another live process stays there; one
    whose process on this machine is gone (killed, its message redelivered) is taken over
    and that process's chunks are handed back at once.
    """
    client = redis_clients.broker()
    key = registry_key(job_id)
    current = client.hget(key, token)
    if current is None:
        return False
    state = SlotState(token, str(current))
    if state.phase == "r" and state.process != process:
        fresh = state.is_live(now=time.time(), live_nodes=set())
        if fresh and not workers.process_is_gone(state.process):
            return False
        if state.process:
            leases_release(process=state.process)
    return bool(client.eval(_SWAP, 1, key, token, state.value, running_state(node, process)))


def slot_refresh(job_id: int, token: str, node: str, process: str) -> None:
    redis_clients.broker().eval(
        _SET_IF_EXISTS, 1, registry_key(job_id), token, running_state(node, process)
    )


def slot_end(job_id: int, token: str) -> None:
    try:
        redis_clients.broker().hdel(registry_key(job_id), token)
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


def slot_forget_if_unchanged(job_id: int, state: SlotState) -> None:
    """Remove a slot found lost, unless it changed since it was read (its message, if it
    ever turns up, then does nothing)."""
    redis_clients.broker().eval(_DEL_IF_EQUAL, 1, registry_key(job_id), state.token, state.value)


def slot_should_yield(node: str, queues: Iterable[str] = ()) -> bool:
    """Whether a slot whose time slice is over should give its process back: other
    messages wait on a queue its worker consumes (`queues`: its kinds' queues and its
    default or -Q ones; kombu keeps priority 0 under the queue's own name), so they could
    run in this process, or its node drains (then the re-queued slot runs elsewhere or
    later)."""
    names = sorted(set(queues) or {settings.CELERY_TASK_DEFAULT_QUEUE})
    try:
        pipe = redis_clients.broker().pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        workers.node_draining_read(pipe, node)
        *waiting, draining = pipe.execute()
    except redis.RedisError:
        return False
    return bool(any(waiting) or draining)
