"""The worker registry: who the worker nodes and processes are, whether they are alive,
whether they drain, and what they can run. Everything else reads this module.

Identity. A node is one `celery worker`, named by its Celery node name (`-n name@host`),
not by its machine's host name: two machines that share a host name stay two nodes. A
process is `<node>|<pid>|<boot id>` (`process_id`): the same id is a chunk's lease owner
(`Chunk.lease_owner`), a running slot's process and an overview row, so a lease maps to
its node by splitting the id (`process_node`), and the boot id tells this machine's
processes apart from another's (`process_is_gone`).

Names are leases. A node's name is held by one worker main process on one machine
(var/node-id, `machine_id`), taken at start (`node_take`) and kept until the node is
forgotten (FORGET_AFTER_S after its last beat), not merely while it is live: a partition
does not free it. Another machine's worker asking for a held name runs as `name-2`; only
the holder beats the node, marks it stopping or removes it.

Liveness. A worker's main process beats its node every HEARTBEAT_S (with its info and
per-core CPU use, jobs.engine.live); each prefork child beats its process. One silent for
LOST_AFTER_S is lost: the overview shows it lost, the dispatcher stops counting its
processes, its running slots and its chunks' leases count as lost, and its restart on the
same machine may take its name back. Lost entries stay on the page (greyed out) for
FORGET_AFTER_S. A node that stops cleanly removes itself and its processes at once
(`node_leave`, if it still holds its name), so a clean stop is never shown as lost.

Draining. One field of the node's hash (`draining`): "drain" after an operator's drain,
"stop" once a warm shutdown began. A slot asks for a claim permit before each claim
(`claim_permit`: refused while the node drains, else the process marks itself claiming
until its claim's transaction ends), so a drain waits for the claims in flight
(`claims_settled`) and, once confirmed, no claim follows it. The flag goes away with the
node (resume, restart, or the node forgotten).

Where it lives: the broker's Redis database, not the channel layer's. The engine compares
this registry with what sits beside it in the broker's database (a slot `v|<node>` is live
while its node beats; a slot at its slice's end reads the queue lengths and the drain flag
in one round trip), so both are lost together when Redis loses the broker's data and can
never disagree about a machine: the beats rebuild the registry within a second, as the
reconciler rebuilds the slots. The overview reads it once a second in one pipeline,
which costs the broker no more than the channel layer.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, Literal

import psutil
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from jobs import kinds, protocol
from jobs.engine import redis_clients
from jobs.protocol import ClusterState, NodeInfo, NodeState, ProcessState
from launcher import join
from launcher.worker import node_id

logger = logging.getLogger(__name__)

# Every beat (a node's, a process's, a running slot's refresh, a lease's renewal) comes
# this often; LOST_AFTER_S of silence, more than three beats, means lost.
HEARTBEAT_S = 1.0
LOST_AFTER_S = 3.5
# A lost node or process stays on the page this long (greyed out), so an operator sees
# which machine vanished, then it is forgotten.
FORGET_AFTER_S = 600
THROUGHPUT_WINDOW_S = 300
THROUGHPUT_TTL_S = THROUGHPUT_WINDOW_S + 60

NODES = "coreboard:nodes"
PROCS = "coreboard:procs"
# The channel-layer group of open overviews: told when a node joins, leaves or drains.
CLUSTER_GROUP = "cluster"
# Fields of a node's hash: the main process that holds the name, its machine, and the
# drain flag.
NODE_PROCESS_FIELD = "process"
NODE_MACHINE_FIELD = "machine"
DRAINING_FIELD = "draining"
# How long a name taken at start stays taken before the worker's first beat (which keeps
# it FORGET_AFTER_S): a worker that dies while starting frees it by then.
NAME_CLAIM_TTL_S = 120
# A name held by another machine's worker: `name-2` ... `name-<this>` are tried.
NAME_SUFFIX_MAX = 9
Draining = Literal["drain", "stop"]
# Fields of a node's hash that are JSON lists.
_LIST_FIELDS = ("cpus", "kinds", "kind_failures", "labels", "queues")

# The name lease. A node's hash names the main process that holds the name (`process`)
# and the machine it runs on (`machine`, launcher.worker.node_id); the hash lives
# FORGET_AFTER_S after the holder's last beat, so the name stays its holder's through a
# partition as long as the page shows it (lost), not only LOST_AFTER_S. Another machine's
# worker that wants the name meanwhile gets `name-2` (node_take); only the holder beats
# the hash, drains it on its shutdown or removes it.

# Take `node` for `process` (ARGV[1]) on `machine` (ARGV[2]) unless another process holds
# it; ARGV[3]: a holder this process may replace (one known to be gone), "" for none;
# ARGV[4] "1": only look; ARGV[5]: the entry's time to live until the first beat. Returns
# nil when taken (or free), else {holder, its machine}.
_NODE_CLAIM = """
local holder = redis.call('hget', KEYS[1], 'process')
if holder and holder ~= ARGV[1] and holder ~= ARGV[3] then
  return {holder, redis.call('hget', KEYS[1], 'machine') or ''}
end
if ARGV[4] == '1' then
  return false
end
if holder and holder ~= ARGV[1] then
  redis.call('del', KEYS[1])
end
redis.call('hset', KEYS[1], 'process', ARGV[1], 'machine', ARGV[2])
if redis.call('ttl', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('expire', KEYS[1], ARGV[5])
end
return false
"""
# The node's beat, by its holder only: returns the holder when another process holds the
# name (this worker was displaced), else writes. ARGV: process, machine, now, node,
# FORGET_AFTER_S, then field/value pairs.
_NODE_BEAT = """
local holder = redis.call('hget', KEYS[1], 'process')
if holder and holder ~= ARGV[1] then
  return holder
end
redis.call('hset', KEYS[1], 'process', ARGV[1], 'machine', ARGV[2], unpack(ARGV, 6))
redis.call('expire', KEYS[1], ARGV[5])
redis.call('zadd', KEYS[2], ARGV[3], ARGV[4])
local forget = tonumber(ARGV[3]) - tonumber(ARGV[5])
redis.call('zremrangebyscore', KEYS[3], 0, forget)
redis.call('zremrangebyscore', KEYS[2], 0, forget)
return false
"""
# Set a field of the node's hash (ARGV[2] = ARGV[3]) only while ARGV[1] holds the name.
_HSET_IF_HOLDER = """
if redis.call('hget', KEYS[1], 'process') ~= ARGV[1] then
  return 0
end
redis.call('hset', KEYS[1], ARGV[2], ARGV[3])
return 1
"""
# Remove the node (its hash and its beat) only while ARGV[1] holds the name.
_NODE_LEAVE = """
if redis.call('hget', KEYS[1], 'process') ~= ARGV[1] then
  return 0
end
redis.call('del', KEYS[1])
redis.call('zrem', KEYS[2], ARGV[2])
return 1
"""
# An operator's resume clears an operator's drain, not a warm shutdown.
_DEL_FIELD_IF_EQUAL = """
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('hdel', KEYS[1], ARGV[1])
end
return 0
"""


# A claim permit (jobs.engine.slots): refused while the node drains; otherwise the process
# marks itself claiming (a field of the node's hash, its value the time) until its claim's
# transaction has ended.
_CLAIM_PERMIT = """
if redis.call('hget', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('hset', KEYS[1], ARGV[2], ARGV[3])
if redis.call('ttl', KEYS[1]) < 0 then
  redis.call('expire', KEYS[1], ARGV[4])
end
return 1
"""
CLAIMING_PREFIX = "claiming:"
# A mark older than this is a process that died while claiming (a claim's transaction
# waits at most one lock timeout): a drain does not wait for it.
CLAIM_MARK_MAX_AGE_S = 30.0


def client() -> redis.Redis:
    """A Redis client on the registry's database, the broker's (per process)."""
    return redis_clients.broker()


def node_key(node: str) -> str:
    return f"coreboard:node:{node}"


def _process_key(process: str) -> str:
    return f"coreboard:proc:{process}"


def _throughput_key(second: int) -> str:
    return f"coreboard:throughput:{second}"


# --- identity ------------------------------------------------------------------------------

# The Celery node name of this worker, set before the pool forks (every child inherits it),
# and the name it was asked for when that one was held by another machine's worker.
_this_node = {"name": "", "renamed_from": ""}


def this_node_set(node: str, *, renamed_from: str = "") -> None:
    _this_node.update(name=node, renamed_from=renamed_from)


def this_node() -> str:
    """This process's node; outside Celery (or before `-n` is known) the host name is the
    best name there is."""
    return _this_node["name"] or f"celery@{socket.gethostname()}"


@cache
def machine_id() -> str:
    """This machine's (this checkout's) id, var/node-id: a name's holder with the same id is
    a worker of this machine, whose restart may take the name over (`node_take`)."""
    return node_id()


@cache
def boot_id() -> str:
    """Tells machines apart (and one machine's boots), whatever their host names."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()[:8]
    except OSError:
        return "0"


def process_id(*, node: str | None = None, pid: int | None = None) -> str:
    """A worker process's one id, e.g. `alpha@node1|4242|a1b2c3d4`: its lease owner, its
    running slots' process and its row on the overview."""
    return f"{node or this_node()}|{pid or os.getpid()}|{boot_id()}"


def process_node(process: str) -> str:
    """The node of a process id (`process_id`)."""
    return process.rsplit("|", 2)[0]


def process_is_gone(process: str) -> bool:
    """True when `process` names a process of this machine (this boot) that no longer
    exists; a process of another machine is never known to be gone."""
    parts = process.rsplit("|", 2)
    if len(parts) != 3:
        return False
    _, pid, boot = parts
    if boot != boot_id() or not pid.isdigit():
        return False
    return not psutil.pid_exists(int(pid))


# --- what a node says about itself ----------------------------------------------------------


@cache
def code_version() -> str:
    """The commit this process's code comes from: what the launcher recorded when it
    started this service (COREBOARD_CODE_VERSION, launcher.join.code_version), else read
    now (a process started another way), else "unknown"."""
    return settings.COREBOARD_CODE_VERSION or join.code_version() or "unknown"


def coreboard_commit() -> str:
    """This process's Coreboard commit as stored with a job or a chunk: "" when unknown
    (shown as "unknown"; stored empty so that two unknowns never read as the same commit)."""
    version = code_version()
    return "" if version == "unknown" else version[:40]


@cache
def coreboard_version() -> str:
    try:
        return metadata.version("coreboard")
    except metadata.PackageNotFoundError:
        return "unknown"


def kind_names() -> list[str]:
    """The job kinds registered in this process."""
    return [kind.name for kind in kinds.all_kinds()]


def worker_kinds() -> frozenset[str]:
    """The kinds this worker runs: every kind registered in its process (built-in, and
    found by jobs.kinds.loading), or only those named in COREBOARD_WORKER_KINDS."""
    registered = set(kind_names())
    wanted = set(settings.COREBOARD_WORKER_KINDS)
    if not wanted:
        return frozenset(registered)
    if unknown := sorted(wanted - registered):
        raise ImproperlyConfigured(
            f"COREBOARD_WORKER_KINDS names kinds this worker does not have: "
            f"{', '.join(unknown)} (it has: {', '.join(sorted(registered))}; add their "
            f"modules to the kinds folder or COREBOARD_JOB_KINDS, or install their package; "
            f"`manage.py kinds` shows those that failed to load)."
        )
    return frozenset(wanted)


def node_info(*, concurrency: int, queues: Iterable[str], node_kinds: Iterable[str]) -> NodeInfo:
    """What a worker's main process publishes about itself, besides its CPU samples:
    `node_kinds` are the kinds it runs (what the dispatcher counts it for)."""
    return {
        "host": socket.gethostname(),
        "boot": boot_id(),
        "pid": os.getpid(),
        "code_version": code_version(),
        "coreboard_version": coreboard_version(),
        "python_version": platform.python_version(),
        "kinds": sorted(node_kinds),
        "kind_failures": kinds.load_failures(),
        "labels": list(settings.COREBOARD_WORKER_LABELS),
        "concurrency": concurrency,
        "queues": sorted(queues),
        "started": time.time(),
        "renamed_from": _this_node["renamed_from"],
    }


# --- claiming a node name (at start) -------------------------------------------------------


@dataclass(frozen=True)
class NodeHolder:
    """The main process that holds a node name, and its machine (machine_id)."""

    process: str
    machine: str

    def is_this_machine(self) -> bool:
        return self.machine == machine_id()

    def is_gone(self) -> bool:
        """Known to be gone: a worker of this machine (this checkout) from an earlier boot,
        or of this boot whose process has ended. Another machine's never is."""
        parts = self.process.rsplit("|", 2)
        if self.machine and self.is_this_machine() and len(parts) == 3 and parts[2] != boot_id():
            return True
        # An entry written before machines were recorded: judged by its boot id alone.
        return (not self.machine or self.is_this_machine()) and process_is_gone(self.process)


def node_claim(
    node: str, *, process: str, replacing: str = "", check_only: bool = False
) -> NodeHolder | None:
    """Take `node` for this worker's main process (`process`); None when done (or, with
    `check_only`, when it is free or already ours), else the holder that stands in the
    way (nothing is then changed). `replacing` names a holder known to be gone, whose
    entry this one replaces."""
    result = client().eval(
        _NODE_CLAIM,
        1,
        node_key(node),
        process,
        machine_id(),
        replacing,
        "1" if check_only else "0",
        NAME_CLAIM_TTL_S,
    )
    if not result:
        return None
    holder, machine = result
    return NodeHolder(process=str(holder), machine=str(machine))


def node_name_candidates(wanted: str) -> list[str]:
    """`wanted`, then `<name>-2@<host>` ... `<name>-<NAME_SUFFIX_MAX>@<host>`."""
    name, at, host = wanted.partition("@")
    return [wanted] + [f"{name}-{n}{at}{host}" for n in range(2, NAME_SUFFIX_MAX + 1)]


def node_take(wanted: str, *, pid: int | None = None) -> tuple[str, NodeHolder | None]:
    """Take a node name for this worker's main process (`pid`, default this one).

    `(name, None)`: this process holds `name`: `wanted` when it is free, its holder is
    gone (a restart), or the holder is this process; otherwise, when another machine's
    worker holds it (alive, or silent for less than FORGET_AFTER_S: partitioned, perhaps),
    the first of `wanted-2`, `wanted-3`... that is free: two machines never share a card.
    `(wanted, holder)`: refused, a live worker of this machine holds the name (a second
    start of the same worker), or every candidate is held.
    """
    refused: NodeHolder | None = None
    for name in node_name_candidates(wanted):
        process = process_id(node=name, pid=pid)
        holder = node_claim(name, process=process)
        if holder is not None and holder.is_gone():
            holder = node_claim(name, process=process, replacing=holder.process)
        if holder is None:
            return name, None
        if holder.is_this_machine():
            return wanted, holder
        refused = refused or holder
    return wanted, refused


def node_release(node: str, *, process: str) -> None:
    """A worker that took `node` and then refuses to start gives the name back."""
    client().eval(_NODE_LEAVE, 2, node_key(node), NODES, process, node)


# --- beats, written by worker processes ------------------------------------------------------


def node_start(node: str) -> None:
    """A node starts active: a drain (an operator's, or the last run's shutdown) ends with
    the worker that had it."""
    client().hdel(node_key(node), DRAINING_FIELD)


def node_beat(node: str, *, info: NodeInfo, cpus: list[float]) -> str | None:
    """The node's heartbeat (its main process, every HEARTBEAT_S): its info and CPU use.
    Written only while this process holds the name (or nobody does: after a broker flush
    or a partition longer than FORGET_AFTER_S, the beat takes it again); otherwise nothing
    is written and the holder is returned: this worker was displaced."""
    fields: dict[Any, Any] = {k: json.dumps(v) if k in _LIST_FIELDS else v for k, v in info.items()}
    now = time.time()
    pairs: list[Any] = []
    for field, value in {**fields, "cpus": json.dumps(cpus), "updated": now}.items():
        pairs += [field, value]
    # Forgetting silent processes and machines is done here, once a second per machine,
    # rather than by every open overview.
    holder = client().eval(
        _NODE_BEAT,
        3,
        node_key(node),
        NODES,
        PROCS,
        process_id(node=node),
        machine_id(),
        now,
        node,
        FORGET_AFTER_S,
        *pairs,
    )
    return str(holder) if holder else None


def process_beat(process: str, *, fields: Mapping[str, Any], finished: Mapping[int, int]) -> None:
    """A process's heartbeat: its state (idle/busy, its chunk) and the chunks it finished,
    by second, since its last beat (the throughput chart)."""
    pipe = client().pipeline(transaction=False)
    mapping: dict[Any, Any] = dict(fields)
    pipe.hset(_process_key(process), mapping=mapping)
    pipe.expire(_process_key(process), FORGET_AFTER_S)
    pipe.zadd(PROCS, {process: time.time()})
    for second, count in finished.items():
        pipe.incrby(_throughput_key(second), count)
        pipe.expire(_throughput_key(second), THROUGHPUT_TTL_S)
    pipe.execute()


def process_forget(process: str) -> None:
    """A process shutting down cleanly leaves the registry (a killed one shows as lost)."""
    pipe = client().pipeline(transaction=False)
    pipe.zrem(PROCS, process)
    pipe.delete(_process_key(process))
    pipe.execute()


def node_remove(node: str) -> None:
    """Remove `node` and every process of it from the registry."""
    conn = client()
    every: list[str] = conn.zrange(PROCS, 0, -1)  # type: ignore[assignment]
    processes = [process for process in every if process_node(process) == node]
    pipe = conn.pipeline(transaction=False)
    pipe.zrem(NODES, node)
    pipe.delete(node_key(node))
    if processes:
        pipe.zrem(PROCS, *processes)
        pipe.delete(*(_process_key(process) for process in processes))
    pipe.execute()


def node_leave(node: str, *, process: str) -> bool:
    """A worker stopping cleanly removes its node and every process of it, if it still
    holds the name (a displaced worker leaves the holder's node alone); True when it did."""
    if not client().eval(_NODE_LEAVE, 2, node_key(node), NODES, process, node):
        return False
    node_remove(node)
    return True


# --- the drain flag --------------------------------------------------------------------------


def node_draining_set(node: str, *, draining: Draining | None) -> None:
    """Drain `node` ("drain": an operator's; "stop": its warm shutdown began) or resume it
    (None: clears an operator's drain only; a stopping node keeps stopping)."""
    conn = client()
    if draining is None:
        conn.eval(_DEL_FIELD_IF_EQUAL, 1, node_key(node), DRAINING_FIELD, "drain")
        return
    pipe = conn.pipeline(transaction=False)
    if draining == "stop":
        # Only the holder's own shutdown stops the node: not another machine's worker
        # that was displaced from the name.
        pipe.eval(_HSET_IF_HOLDER, 1, node_key(node), process_id(node=node), DRAINING_FIELD, "stop")
    else:
        pipe.hsetnx(node_key(node), DRAINING_FIELD, "drain")
    # A node that left meanwhile leaves no entry behind for good (a live one renews this).
    pipe.expire(node_key(node), FORGET_AFTER_S)
    pipe.execute()


def node_draining_read(pipe: redis.client.Pipeline, node: str) -> None:
    """Add the read of `node`'s drain flag to `pipe`; its result reads as draining when
    truthy (a slot asks with the queue lengths in one round trip)."""
    pipe.hget(node_key(node), DRAINING_FIELD)


def node_is_draining(node: str) -> bool:
    """Whether `node` is draining (an operator's drain or a warm shutdown): its slots run
    no further chunks. A Redis error reads as not draining (the work goes on)."""
    try:
        return bool(client().hget(node_key(node), DRAINING_FIELD))
    except redis.RedisError:
        return False


def claim_permit(node: str, process: str) -> bool:
    """May this process claim chunks now? False while `node` drains; otherwise it is marked
    claiming until `claim_done`. A Redis error permits (the work goes on), and while Redis
    is known not to answer the permit is not asked for at all (a batch must not wait a
    timeout: jobs.engine.redis_clients)."""
    if not redis_clients.broker_usable():
        return True
    pipe = client().pipeline(transaction=False)
    claim_permit_read(pipe, node, process)
    try:
        (permitted,) = pipe.execute()
    except redis.RedisError:
        return True
    return bool(permitted)


def claim_permit_read(pipe: redis.client.Pipeline, node: str, process: str) -> None:
    """Add `claim_permit`'s request to `pipe`; its result reads as permitted when truthy (a
    running slot asks with its registry check in one round trip, jobs.engine.slot_registry)."""
    pipe.eval(
        _CLAIM_PERMIT,
        1,
        node_key(node),
        DRAINING_FIELD,
        CLAIMING_PREFIX + process,
        f"{time.time():.3f}",
        FORGET_AFTER_S,
    )


def claim_done(node: str, process: str) -> None:
    """This process's claim has ended (committed or not). A mark left by a Redis outage
    is ignored after CLAIM_MARK_MAX_AGE_S."""
    if not redis_clients.broker_usable():
        return
    try:
        client().hdel(node_key(node), CLAIMING_PREFIX + process)
    except redis.RedisError as error:
        logger.warning("could not clear the claim mark of %s: %s", process, error)


def claims_settled(node: str, *, timeout_s: float, poll_s: float = 0.02) -> bool:
    """Wait until no process of `node` is claiming (a drain's confirmation: every claim
    from now on is refused); False when some still were after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        marks: dict[str, str] = client().hgetall(node_key(node))  # type: ignore[assignment]
        now = time.time()
        claiming = [
            field
            for field, at in marks.items()
            if field.startswith(CLAIMING_PREFIX) and now - float(at) < CLAIM_MARK_MAX_AGE_S
        ]
        if not claiming:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


# --- read by the dispatcher -----------------------------------------------------------------


@dataclass(frozen=True)
class LiveWorker:
    """A worker node whose main process beat recently: its processes and its kinds."""

    concurrency: int
    kinds: frozenset[str]


def live_workers(conn: redis.Redis | None = None) -> dict[str, LiveWorker]:
    """Worker nodes whose main process beat recently, with their process counts and kinds."""
    conn = conn or client()
    nodes: list[str] = conn.zrangebyscore(NODES, time.time() - LOST_AFTER_S, "+inf")  # type: ignore[assignment]
    pipe = conn.pipeline(transaction=False)
    for node in nodes:
        pipe.hmget(node_key(node), "concurrency", "kinds")
    found = pipe.execute() if nodes else []
    return {
        node: LiveWorker(
            concurrency=int(concurrency or 1),
            kinds=frozenset(json.loads(node_kinds or "[]")),
        )
        for node, (concurrency, node_kinds) in zip(nodes, found, strict=True)
    }


def workers_seen(conn: redis.Redis | None = None) -> dict[str, float]:
    """Every worker node of the last FORGET_AFTER_S, live or not, with its last beat."""
    conn = conn or client()
    seen: list[tuple[str, float]] = conn.zrange(NODES, 0, -1, withscores=True)  # type: ignore[assignment]
    return dict(seen)


def is_lost(last_beat: float, *, now: float) -> bool:
    return now - last_beat > LOST_AFTER_S


def kind_capacity(workers: Mapping[str, LiveWorker], kind: str) -> int:
    """Live worker processes that can run `kind`."""
    return sum(worker.concurrency for worker in workers.values() if kind in worker.kinds)


# --- read by the overview -----------------------------------------------------------------


def changed_publish() -> None:
    """Tell open overviews to push the cluster now rather than at their next tick."""
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(CLUSTER_GROUP, {"type": protocol.EVENT_CLUSTER_CHANGED})
    except Exception:
        logger.warning("could not tell open pages that the cluster changed", exc_info=True)


def _node_state(*, lost: bool, draining: str, busy: int) -> str:
    if lost:
        return "lost"
    if draining == "stop":
        return "stopping"
    if draining:
        return "draining" if busy else "drained"
    return "active"


def cluster_state(conn: redis.Redis | None = None) -> ClusterState:
    """Nodes (with their info, state and per-core CPU), processes with their state, chunks
    finished per second, and this (web) process's code version and kinds to compare with."""
    conn = conn or client()
    now = time.time()
    procs: list[tuple[str, float]] = list(conn.zrange(PROCS, 0, -1, withscores=True))  # type: ignore[arg-type]
    nodes: list[tuple[str, float]] = list(conn.zrange(NODES, 0, -1, withscores=True))  # type: ignore[arg-type]
    pipe = conn.pipeline(transaction=False)
    for process, _ in procs:
        pipe.hgetall(_process_key(process))
    for node, _ in nodes:
        pipe.hgetall(node_key(node))
    seconds = list(range(int(now) - THROUGHPUT_WINDOW_S + 1, int(now) + 1))
    pipe.mget([_throughput_key(s) for s in seconds])
    results = pipe.execute()
    proc_hashes = results[: len(procs)]
    # A node that only claimed its name has not published itself yet: not shown.
    node_hashes = [
        data if "started" in data else {} for data in results[len(procs) : len(procs) + len(nodes)]
    ]
    counts = results[-1]
    lost_nodes = {
        node
        for (node, seen), data in zip(nodes, node_hashes, strict=True)
        if data and is_lost(seen, now=now)
    }
    processes: list[ProcessState] = []
    for (process, seen), data in zip(procs, proc_hashes, strict=True):
        if not data or now - seen > FORGET_AFTER_S:
            continue
        node = data.get("node") or process_node(process)
        # A process of a lost node is lost with it, however recently it beat.
        lost = is_lost(seen, now=now) or node in lost_nodes
        processes.append(
            {
                "id": process,
                "node": node,
                "host": data["host"],
                "pid": int(data["pid"]),
                "core": int(data["core"]) if data.get("core") else None,
                "state": "lost" if lost else data["state"],
                "job_id": int(data["job_id"]) if data.get("job_id") and not lost else None,
                "chunk_index": (
                    int(data["chunk_index"]) if data.get("chunk_index") and not lost else None
                ),
                "since": float(data["since"]),
                "last_seen": seen,
            }
        )
    processes.sort(key=lambda p: (p["node"], p["pid"]))
    busy: dict[str, int] = {}
    for entry in processes:
        if entry["state"] == "busy":
            busy[entry["node"]] = busy.get(entry["node"], 0) + 1
    web_kinds = set(kind_names())
    node_list: list[NodeState] = []
    for (node, seen), data in zip(nodes, node_hashes, strict=True):
        if not data or now - seen > FORGET_AFTER_S:
            continue
        lost = node in lost_nodes
        lists = {key: json.loads(data.get(key) or "[]") for key in _LIST_FIELDS}
        node_kinds = set(lists["kinds"])
        draining = data.get(DRAINING_FIELD, "")
        node_list.append(
            {
                "node": node,
                "host": data.get("host", node.partition("@")[2]),
                "cpus": lists["cpus"],
                "lost": lost,
                "last_seen": seen,
                "state": _node_state(lost=lost, draining=draining, busy=busy.get(node, 0)),
                "draining": draining == "drain",
                "busy": busy.get(node, 0),
                "code_version": data.get("code_version", "unknown"),
                "coreboard_version": data.get("coreboard_version", "unknown"),
                "python_version": data.get("python_version", "unknown"),
                "kinds": lists["kinds"],
                # Only a node that says which kinds it has can lack some.
                "missing_kinds": sorted(web_kinds - node_kinds) if "kinds" in data else [],
                "extra_kinds": sorted(node_kinds - web_kinds),
                "kind_failures": lists["kind_failures"],
                "labels": lists["labels"],
                "queues": lists["queues"],
                "concurrency": int(data.get("concurrency") or 0) or None,
                "started": float(data["started"]) if data.get("started") else None,
                "renamed_from": data.get("renamed_from", ""),
            }
        )
    node_list.sort(key=lambda n: n["node"])
    return {
        "now": now,
        "web": {
            "code_version": code_version(),
            "kinds": sorted(web_kinds),
            "kind_failures": kinds.load_failures(),
        },
        "nodes": node_list,
        "processes": processes,
        "throughput": [
            [second, int(count or 0)] for second, count in zip(seconds, counts, strict=True)
        ],
    }


def cluster_state_unknown() -> ClusterState:
    """cluster_state while the registry cannot be read (the broker does not answer): this
    web process, and no node, process or throughput figure."""
    return {
        "now": time.time(),
        "web": {
            "code_version": code_version(),
            "kinds": sorted(kind_names()),
            "kind_failures": kinds.load_failures(),
        },
        "nodes": [],
        "processes": [],
        "throughput": [],
    }


def node_get(node: str, conn: redis.Redis | None = None) -> NodeState | None:
    """One node as cluster_state shows it, or None when it is not (or no longer) known."""
    for entry in cluster_state(conn)["nodes"]:
        if entry["node"] == node:
            return entry
    return None
