"""The slot registry: every slot message a job has, by a random token, in a Redis hash per
job in the broker's database.

It shares the fate of the messages: when Redis loses its data, the registry is lost with the
messages it described. A slot's state has a phase: `q|<time>|<priority>` (sent, with its
message's priority), `v|<node>` (reserved by a worker) or `r|<node>|<process>|<time>`
(running, refreshed every HEARTBEAT_S). A slot counts as live while it is queued, reserved
by a node that still beats, or running with a refresh younger than LOST_AFTER_S
(jobs.engine.workers).

Parallelism is an invariant, so every change of a slot's state is a compare-and-set (a
Lua script, atomic in Redis): a reservation never overwrites a running state; a slot
begins only from a queued or reserved state, or over a process that is provably gone; a
running slot refreshes, re-queues and removes its entry only while the entry is still its
own. A running slot checks that at every batch boundary, in the round trip of its claim
permit (`slot_claim_permit`): one whose entry is gone (Redis lost its data) or taken over
stops claiming and ends, so the reconciler, which also counts the processes still holding
the job's chunks under a live lease (jobs.engine.dispatch), never sends one slot too many.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.transport.redis import Channel as RedisChannel

from jobs.engine import redis_clients, workers
from jobs.engine.chunks import leases_release
from jobs.models import Chunk, Job

logger = logging.getLogger(__name__)

SLOT_TASK = "jobs.tasks.slot_run"
REGISTRY_TTL_S = 7 * 24 * 3600

# The ids of the jobs that have a registry (so the reconciler finds those of ended jobs).
REGISTERED_JOBS = "coreboard:slots:jobs"

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
# Begin: swap the state read (ARGV[2]) for the running one (ARGV[3]), unless the job's
# other running slots refreshed since ARGV[5] already number ARGV[4] (0: no limit); then
# the surplus slot's entry is removed (-1).
_BEGIN = """
if redis.call('hget', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local limit = tonumber(ARGV[4])
if limit > 0 then
  local running = 0
  local since = tonumber(ARGV[5])
  local all = redis.call('hgetall', KEYS[1])
  for i = 1, #all, 2 do
    local value = all[i + 1]
    if all[i] ~= ARGV[1] and string.sub(value, 1, 2) == 'r|' then
      local at = tonumber(string.match(value, '|([^|]*)$'))
      if at and at >= since then
        running = running + 1
      end
    end
  end
  if running >= limit then
    redis.call('hdel', KEYS[1], ARGV[1])
    return -1
  end
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
# A worker reserved the slot's message: queued or reserved states only. A duplicate
# message of a running slot must not overwrite its running state.
_RESERVE = """
local state = redis.call('hget', KEYS[1], ARGV[1])
if state and (string.sub(state, 1, 2) == 'q|' or string.sub(state, 1, 2) == 'v|') then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""
# Write the slot's new running state (ARGV[3]) only while it is this process's (its state
# starts with ARGV[2], `r|<node>|<process>|`); 0 when it is gone or another's.
_SET_IF_OWN = """
local state = redis.call('hget', KEYS[1], ARGV[1])
if state and string.sub(state, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
_DEL_IF_OWN = """
local state = redis.call('hget', KEYS[1], ARGV[1])
if state and string.sub(state, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('hdel', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# Back to queued (ARGV[3]) from a queued or reserved state, or from this process's running
# state (prefix ARGV[2]; empty: none).
_REQUEUE = """
local state = redis.call('hget', KEYS[1], ARGV[1])
if not state then
  return 0
end
local phase = string.sub(state, 1, 2)
local own = ARGV[2] ~= '' and string.sub(state, 1, string.len(ARGV[2])) == ARGV[2]
if phase == 'q|' or phase == 'v|' or own then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
# Aging: replace a queued slot (ARGV[1], still ARGV[2]) by a new token (ARGV[3], state
# ARGV[4]); the old message then finds no entry and does nothing.
_RAISE = """
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('hdel', KEYS[1], ARGV[1])
  redis.call('hset', KEYS[1], ARGV[3], ARGV[4])
  return 1
end
return 0
"""
# A registry the sweep emptied leaves the index (one that gained a slot meanwhile stays).
_UNINDEX_IF_EMPTY = """
if redis.call('exists', KEYS[1]) == 0 then
  return redis.call('srem', KEYS[2], ARGV[1])
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

    @property
    def queued_at(self) -> float:
        """When a queued slot was sent (0.0 for other phases)."""
        parts = self.value.split("|")
        try:
            return float(parts[1]) if self.phase == "q" and len(parts) > 1 else 0.0
        except ValueError:
            return 0.0

    @property
    def queued_step(self) -> int | None:
        """The message priority a queued slot was sent with (None: not queued, or sent
        before priorities existed)."""
        parts = self.value.split("|")
        if self.phase != "q" or len(parts) < 3 or not parts[2].isdigit():
            return None
        return int(parts[2])

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


# What a running slot's state starts with (a reserved one's: "q|", a requeued one's: "v|").
RUNNING = "r|"


def running_prefix(node: str, process: str) -> str:
    """What every running state of a slot in `process` starts with."""
    return f"{RUNNING}{node}|{process}|"


def running_state(node: str, process: str) -> str:
    return f"{running_prefix(node, process)}{time.time():.3f}"


def slots_of(job_id: int) -> list[SlotState]:
    values: dict[str, str] = redis_clients.broker().hgetall(registry_key(job_id))  # type: ignore[assignment]
    return [SlotState(token, value) for token, value in values.items()]


def queued_state(priority: int) -> str:
    return f"q|{time.time():.3f}|{priority}"


def slot_send(job_id: int, token: str, queue: str, priority: int) -> None:
    """Queue one slot message on `queue` (its kind's) with the message `priority` (kombu's:
    0 first; jobs.engine.dispatch.broker_priority): registered first, so a worker never
    finds it unknown."""
    key = registry_key(job_id)
    client = redis_clients.broker()
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, token, queued_state(priority))
    pipe.expire(key, REGISTRY_TTL_S)
    pipe.sadd(REGISTERED_JOBS, job_id)
    pipe.expire(REGISTERED_JOBS, REGISTRY_TTL_S)
    pipe.execute()
    try:
        current_app.send_task(SLOT_TASK, args=[job_id, token], queue=queue, priority=priority)
    except Exception:
        client.hdel(key, token)
        raise


def slot_raise(job_id: int, state: SlotState, token: str, queue: str, priority: int) -> int:
    """Send a queued slot again at a higher message `priority` under a new `token`, if it
    is still queued as `state` (1: raised, 0: it moved on). Its old message stays in the
    lower list until a worker takes it, and then does nothing (STALE)."""
    client = redis_clients.broker()
    key = registry_key(job_id)
    queued = queued_state(priority)
    if not client.eval(_RAISE, 1, key, state.token, state.value, token, queued):
        return 0
    try:
        current_app.send_task(SLOT_TASK, args=[job_id, token], queue=queue, priority=priority)
    except Exception:
        # Back to the old entry, whose message is still queued.
        client.eval(_RAISE, 1, key, token, queued, state.token, state.value)
        raise
    return 1


def slot_reserved(job_id: int, token: str, node: str) -> bool:
    """A worker took the slot's message off the queue (it may wait there for a process);
    False when the slot is unknown or already running (a duplicate message)."""
    return bool(redis_clients.broker().eval(_RESERVE, 1, registry_key(job_id), token, f"v|{node}"))


BEGUN = "begun"
# Not registered: replaced after being given up for lost, or its job is over.
STALE = "stale"
# A duplicate message of a slot that runs in another live process.
RUNNING_ELSEWHERE = "running-elsewhere"
# Registered, but the job already runs on as many processes as its parallelism.
SURPLUS = "surplus"


def slot_begin(job_id: int, token: str, node: str, process: str, *, parallelism: int = 0) -> str:
    """Mark the slot running in this process: BEGUN, or why it must not run (STALE,
    RUNNING_ELSEWHERE, SURPLUS).

    A slot running in another process stays there unless that process is provably gone:
    a process of this machine that no longer exists (killed, its message redelivered; its
    chunks are handed back at once), or one whose refresh is older than LOST_AFTER_S and
    which holds no chunk under a live lease. The swap is a compare-and-set on the state
    read, so of two messages of one slot only one begins; with a `parallelism` (0: none)
    it also counts the job's other running slots in the same script, and a slot that
    would exceed it is removed instead (two dispatchers that raced sent one too many).
    """
    client = redis_clients.broker()
    key = registry_key(job_id)
    current = client.hget(key, token)
    if current is None:
        return STALE
    state = SlotState(token, str(current))
    if state.phase not in ("q", "v", "r"):
        return STALE
    if state.phase == "r" and state.process != process:
        if workers.process_is_gone(state.process):
            leases_release(process=state.process)
        elif state.is_live(now=time.time(), live_nodes=set()) or _holds_live_leases(state.process):
            return RUNNING_ELSEWHERE
    began = client.eval(
        _BEGIN,
        1,
        key,
        token,
        state.value,
        running_state(node, process),
        parallelism,
        f"{time.time() - workers.LOST_AFTER_S:.3f}",
    )
    if began == -1:
        return SURPLUS
    return BEGUN if began else RUNNING_ELSEWHERE


def _holds_live_leases(process: str) -> bool:
    return Chunk.objects.filter(
        status=Chunk.Status.RUNNING, lease_owner=process, lease_expires_at__gt=timezone.now()
    ).exists()


def slot_refresh(job_id: int, token: str, node: str, process: str) -> bool:
    """Refresh the slot's running state, only while it is this process's; False when it
    is gone (Redis lost its data) or another process's (the slot must stop claiming)."""
    return bool(
        redis_clients.broker().eval(
            _SET_IF_OWN,
            1,
            registry_key(job_id),
            token,
            running_prefix(node, process),
            running_state(node, process),
        )
    )


@dataclass(frozen=True)
class ClaimPermit:
    """What a running slot learns at a batch boundary: whether it still owns its registry
    entry, and whether its node lets it claim (jobs.engine.workers.claim_permit)."""

    owned: bool
    permitted: bool
    # The job's running slots, this one included: a claim takes at most a share of what
    # is left among them (jobs.engine.chunks.chunks_claim).
    slots: int = 1
    # A slot of a higher priority waits on a queue its worker consumes: give way now.
    outranked: bool = False


def slot_claim_permit(
    job_id: int, token: str, node: str, process: str, *, above: Iterable[str] = ()
) -> ClaimPermit:
    """At a batch boundary, in one round trip: refresh the slot's entry if it is still
    this process's, ask for the node's claim permit (marking the process claiming
    until workers.claim_done), and look whether messages wait in the lists `above` (the
    higher priorities of the queues its worker consumes, `priority_lists`). A slot that
    no longer owns its entry must claim no more; one outranked gives way.
    A Redis error owns and permits (the work goes on, as claim_permit does), and while
    Redis is known not to answer neither is asked for (jobs.engine.redis_clients)."""
    if not redis_clients.broker_usable():
        return ClaimPermit(owned=True, permitted=True)
    pipe = redis_clients.broker().pipeline(transaction=False)
    pipe.eval(
        _SET_IF_OWN,
        1,
        registry_key(job_id),
        token,
        running_prefix(node, process),
        running_state(node, process),
    )
    workers.claim_permit_read(pipe, node, process)
    pipe.hvals(registry_key(job_id))
    above = list(above)
    for name in above:
        pipe.llen(name)
    try:
        owned, permitted, states, *waiting = pipe.execute()
    except redis.RedisError:
        return ClaimPermit(owned=True, permitted=True)
    running = sum(1 for state in states if state.startswith(RUNNING))
    return ClaimPermit(
        owned=bool(owned),
        permitted=bool(permitted),
        slots=max(1, running),
        outranked=any(waiting),
    )


def slot_end(job_id: int, token: str, node: str, process: str) -> None:
    """Remove the slot's entry, if it is still this process's."""
    try:
        redis_clients.broker().eval(
            _DEL_IF_OWN, 1, registry_key(job_id), token, running_prefix(node, process)
        )
    except redis.RedisError:
        # Unregistered or not, the reconciler sees to the job's slots.
        logger.warning("could not unregister a slot of job %s", job_id)


REQUEUED = "requeued"
# The entry is gone or another process's: the slot must end, not go back to the queue.
DISOWNED = "disowned"
# The broker did not take the message: the slot keeps its entry (and keeps working).
NOT_SENT = "not-sent"


def slot_requeue(
    job_id: int, token: str, queue: str, *, priority: int, node: str = "", process: str = ""
) -> str:
    """Put the slot back at the end of its queue, at the message `priority` of its job
    (its time slice is over, a higher priority waits, or its node drains): REQUEUED,
    DISOWNED or NOT_SENT. A running slot (`node` and `process` given)
    goes back only from its own running state; a reserved one only from a queued or
    reserved state, so a duplicate message never re-queues a slot that runs elsewhere."""
    key = registry_key(job_id)
    own = running_prefix(node, process) if process else ""
    queued = queued_state(priority)
    client = redis_clients.broker()
    try:
        if not client.eval(_REQUEUE, 1, key, token, own, queued):
            return DISOWNED
        current_app.send_task(SLOT_TASK, args=[job_id, token], queue=queue, priority=priority)
    except Exception:
        logger.warning("could not requeue slot of job %s; it keeps running", job_id)
        try:
            if own:
                client.eval(_SWAP, 1, key, token, queued, running_state(node, process))
            else:
                client.eval(_DEL_IF_EQUAL, 1, key, token, queued)
        except redis.RedisError:
            pass
        return NOT_SENT
    return REQUEUED


def slot_forget_if_unchanged(job_id: int, state: SlotState) -> None:
    """Remove a slot found lost, unless it changed since it was read (its message, if it
    ever turns up, then does nothing)."""
    redis_clients.broker().eval(_DEL_IF_EQUAL, 1, registry_key(job_id), state.token, state.value)


def registries_sweep(*, active: Iterable[int]) -> int:
    """Remove the registries of jobs that are over (a cancel followed by a kill leaves
    entries no slot will end); the number of entries removed.

    `active`: the jobs active when the caller last read them. Entries are read before the
    statuses are read again, and removed only if unchanged, so a job retried meanwhile
    keeps its new slots.
    """
    client = redis_clients.broker()
    registered = {int(job_id) for job_id in client.smembers(REGISTERED_JOBS)}
    candidates = sorted(registered - set(active))
    if not candidates:
        return 0
    pipe = client.pipeline(transaction=False)
    for job_id in candidates:
        pipe.hgetall(registry_key(job_id))
    entries = dict(zip(candidates, pipe.execute(), strict=True))
    still_active = set(
        Job.objects.filter(pk__in=candidates, status__in=Job.ACTIVE_STATUSES).values_list(
            "pk", flat=True
        )
    )
    removed = 0
    for job_id in candidates:
        if job_id in still_active:
            continue
        for token, value in entries[job_id].items():
            removed += int(client.eval(_DEL_IF_EQUAL, 1, registry_key(job_id), token, value))
        client.eval(_UNINDEX_IF_EMPTY, 2, registry_key(job_id), REGISTERED_JOBS, job_id)
    return removed


def priority_lists(queues: Iterable[str], priorities: Iterable[int]) -> list[str]:
    """The Redis lists that hold the messages of `queues` at these message priorities, as
    kombu's Redis transport names them (a queue's priority 0 under its own name, the
    others after its separator)."""
    sep = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("sep", RedisChannel.sep)
    names = sorted(set(queues) or {settings.CELERY_TASK_DEFAULT_QUEUE})
    return [f"{name}{sep}{step}" if step else name for step in priorities for name in names]


def slot_should_yield(node: str, lists: Iterable[str] = ()) -> bool:
    """Whether a slot whose time slice is over should give its process back: other
    messages wait in `lists` (`priority_lists` of the queues its worker consumes, its
    kinds' queues and its default or -Q ones, at its priority and the higher ones), so
    they could run in this process, or its node drains (then the re-queued slot runs
    elsewhere or later). Lower priorities wait: they would be taken after this slot's own
    message anyway."""
    names = list(lists) or [settings.CELERY_TASK_DEFAULT_QUEUE]
    try:
        pipe = redis_clients.broker().pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        workers.node_draining_read(pipe, node)
        *waiting, draining = pipe.execute()
    except redis.RedisError:
        return False
    return bool(any(waiting) or draining)
