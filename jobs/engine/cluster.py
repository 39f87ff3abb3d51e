"""Live cluster state in Redis: worker nodes, their processes, per-core CPU, throughput.

High-rate, short-lived state lives here, not in PostgreSQL. Worker processes write it
(heartbeat threads, a sampler in each worker's main process, a counter per finished
chunk); pages read it once a second through the overview socket.

A node is one `celery worker`, named by its Celery node name (`-n name@host`), not by its
machine's host name: two machines that share a host name stay two nodes. A process is
`<node>|<pid>|<boot id>`. A node or process whose heartbeat stops is shown as lost after
LOST_AFTER_S and forgotten after FORGET_AFTER_S; one that stops cleanly removes itself at
once and tells open pages (CLUSTER_GROUP).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from functools import cache
from importlib import metadata
from typing import Any

import psutil
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from jobs import kinds, protocol
from jobs.engine import redis_clients
from jobs.engine.dispatch import boot_id, worker_draining

logger = logging.getLogger(__name__)

PROCS = "coreboard:procs"
NODES = "coreboard:nodes"
# The channel-layer group of open overviews: told when a node joins, leaves or drains.
CLUSTER_GROUP = "cluster"
HEARTBEAT_S = 1.0
LOST_AFTER_S = 3.5
# A lost node or process stays on the page this long (greyed out), so an operator sees
# which machine vanished, then it is forgotten.
FORGET_AFTER_S = 600
THROUGHPUT_WINDOW_S = 300
THROUGHPUT_TTL_S = THROUGHPUT_WINDOW_S + 60
# The engine's draining flag expires (dispatch.worker_draining); a drained node renews it.
DRAIN_RENEW_S = 600
# Fields of a node's hash that are JSON lists.
_LIST_FIELDS = ("cpus", "kinds", "labels", "queues")


def _proc_key(member: str) -> str:
    return f"coreboard:proc:{member}"


def _node_key(node: str) -> str:
    return f"coreboard:node:{node}"


def _throughput_key(second: int) -> str:
    return f"coreboard:throughput:{second}"


_state: dict[str, Any] = {}
_finished: dict[int, int] = {}
_lock = threading.Lock()
_wake = threading.Event()
_heartbeat_started = threading.Event()
# Set when this process leaves the cluster: its threads write nothing more.
_stopped = threading.Event()
# Writes and the final removal are serialised, so nothing is written after the removal.
_write_lock = threading.Lock()
# A prefork child may be forked while the main process's sampler holds the lock.
os.register_at_fork(after_in_child=lambda: globals().update(_write_lock=threading.Lock()))
_identity: dict[str, str] = {"node": ""}


def client() -> redis.Redis:
    return redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)


def _node() -> str:
    # Outside Celery (or before `-n` is known) the host name is the best name there is.
    return _identity["node"] or f"celery@{socket.gethostname()}"


def _member(pid: int | None = None) -> str:
    return f"{_node()}|{pid or os.getpid()}|{boot_id()}"


def _pinned_core() -> int | None:
    """The core this process is pinned to, if its affinity is a single core."""
    try:
        affinity = psutil.Process().cpu_affinity()
    except (AttributeError, psutil.Error):
        return None
    return affinity[0] if affinity and len(affinity) == 1 else None


# --- what a node says about itself ----------------------------------------------------------


@cache
def code_version() -> str:
    """The commit this process's code comes from, read once: a REVISION file written at
    build time (for deployments without .git), else `git rev-parse`, else "unknown"."""
    revision = settings.BASE_DIR / "REVISION"
    try:
        text = revision.read_text().strip()
        if text:
            return text[:40]
    except OSError:
        pass
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (git from PATH is the point)
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


@cache
def coreboard_version() -> str:
    try:
        return metadata.version("coreboard")
    except metadata.PackageNotFoundError:
        return "unknown"


def kind_names() -> list[str]:
    """The job kinds registered in this process."""
    return [kind.name for kind in kinds.all_kinds()]


def node_info(*, concurrency: int, queues: list[str]) -> dict[str, Any]:
    """What a worker's main process publishes about itself, besides its CPU samples."""
    return {
        "host": socket.gethostname(),
        "boot": boot_id(),
        "pid": os.getpid(),
        "code_version": code_version(),
        "coreboard_version": coreboard_version(),
        "python_version": platform.python_version(),
        "kinds": sorted(kind_names()),
        "labels": list(settings.COREBOARD_WORKER_LABELS),
        "concurrency": concurrency,
        "queues": sorted(queues),
        "started": time.time(),
    }


# --- written by worker processes ---------------------------------------------------------------


def _write_heartbeat() -> None:
    """One round trip: this process's state, its heartbeat, and the chunks it finished."""
    with _lock:
        finished = dict(_finished)
        _finished.clear()
    state = dict(_state)
    member = _member()
    core = _pinned_core()
    fields: dict[Any, Any] = {
        "node": _node(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "state": state.get("state", "idle"),
        "job_id": state.get("job_id", ""),
        "chunk_index": state.get("chunk_index", ""),
        "since": state.get("since", time.time()),
        "core": "" if core is None else core,
    }
    with _write_lock:
        if _stopped.is_set():
            return
        pipe = client().pipeline(transaction=False)
        pipe.hset(_proc_key(member), mapping=fields)
        pipe.expire(_proc_key(member), FORGET_AFTER_S)
        pipe.zadd(PROCS, {member: time.time()})
        for second, count in finished.items():
            pipe.incrby(_throughput_key(second), count)
            pipe.expire(_throughput_key(second), THROUGHPUT_TTL_S)
        pipe.execute()


# The calls below sit on a chunk's path, so they only touch memory and wake the heartbeat
# thread, which writes to Redis; in a process without one (not a worker), they do nothing.


def process_running(job_id: int, chunk_index: int) -> None:
    # A slot runs chunks back to back, some of them a millisecond long: only a change of
    # job is written at once, the next chunk's index goes out with the next heartbeat.
    changed = _state.get("state") != "busy" or _state.get("job_id") != job_id
    _state.update(state="busy", job_id=job_id, chunk_index=chunk_index)
    if changed:
        _state["since"] = time.time()
        _wake.set()


def process_idle() -> None:
    _state.update(state="idle", job_id="", chunk_index="", since=time.time())
    _wake.set()


def chunk_finished() -> None:
    """Count one finished chunk in the current second, for the throughput chart."""
    if not _heartbeat_started.is_set():
        return
    second = int(time.time())
    with _lock:
        _finished[second] = _finished.get(second, 0) + 1


def process_forget() -> None:
    """A process shutting down cleanly leaves the list (a killed one shows as lost)."""

    def forget() -> None:
        with _write_lock:
            _stopped.set()
            member = _member()
            pipe = client().pipeline(transaction=False)
            pipe.zrem(PROCS, member)
            pipe.delete(_proc_key(member))
            pipe.execute()

    _safely(forget)


def node_stopping() -> None:
    """Warm shutdown began: the node finishes its current chunks, then leaves."""
    # Called from a signal handler: one Redis write, no channel-layer round trip (open
    # pages see it at their next tick).
    _safely(lambda: client().hset(_node_key(_node()), "stopping", "1"))


def node_forget() -> None:
    """A worker's main process stopping cleanly removes its node and all of its processes
    at once (prefork children do not reliably run their own exit hooks), and tells open
    overviews, so nothing of it shows as lost."""

    def forget() -> None:
        with _write_lock:
            _stopped.set()
            node_remove(_node())

    _safely(forget)
    changed_publish()


def node_remove(node: str) -> None:
    """Remove `node` and every process of it from the live state."""
    conn = client()
    every: list[str] = conn.zrange(PROCS, 0, -1)  # type: ignore[assignment]
    members = [member for member in every if member.startswith(f"{node}|")]
    pipe = conn.pipeline(transaction=False)
    pipe.zrem(NODES, node)
    pipe.delete(_node_key(node))
    if members:
        pipe.zrem(PROCS, *members)
        pipe.delete(*(_proc_key(member) for member in members))
    pipe.execute()


def node_draining_set(node: str, *, draining: bool) -> None:
    """Record an operator's drain (or resume) of `node`, shown until the node restarts."""
    if draining:
        client().hset(_node_key(node), "draining", "1")
    else:
        client().hdel(_node_key(node), "draining")


def changed_publish() -> None:
    """Tell open overviews to push the cluster now rather than at their next tick."""
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(CLUSTER_GROUP, {"type": protocol.EVENT_CLUSTER_CHANGED})
    except Exception:
        logger.warning("could not tell open pages that the cluster changed", exc_info=True)


def _safely(write: Callable[[], Any]) -> None:
    # Live state is best effort: a Redis hiccup must never fail a chunk.
    try:
        write()
    except redis.RedisError:
        logger.warning("could not update live cluster state", exc_info=True)


def start_heartbeat(*, node: str) -> None:
    """In each worker child process: write its state when it changes, and at least every
    second as a heartbeat."""
    _identity["node"] = node
    process_idle()
    _heartbeat_started.set()

    def run() -> None:
        while not _stopped.is_set():
            _wake.clear()
            _safely(_write_heartbeat)
            _wake.wait(HEARTBEAT_S)

    threading.Thread(target=run, name="coreboard-heartbeat", daemon=True).start()


def start_node_sampler(*, node: str, info: dict[str, Any]) -> None:
    """In each worker's main process: publish the node (its info, per-core CPU use) about
    once a second. A node starts active: an operator's drain ends with the worker."""
    _identity["node"] = node
    psutil.cpu_percent(percpu=True)  # the first call only primes the counters
    fields: dict[Any, Any] = {k: json.dumps(v) if k in _LIST_FIELDS else v for k, v in info.items()}
    _safely(lambda: client().hdel(_node_key(node), "draining", "stopping"))
    drain_renewed = [0.0]

    def sample() -> None:
        cpus = psutil.cpu_percent(percpu=True)
        with _write_lock:
            if _stopped.is_set():
                return
            now = time.time()
            pipe = client().pipeline(transaction=False)
            pipe.hset(_node_key(node), mapping={**fields, "cpus": json.dumps(cpus), "updated": now})
            pipe.expire(_node_key(node), FORGET_AFTER_S)
            pipe.zadd(NODES, {node: now})
            pipe.hget(_node_key(node), "draining")
            # Forgetting silent processes and machines is done here, once a second per
            # machine, rather than by every open overview.
            pipe.zremrangebyscore(PROCS, 0, now - FORGET_AFTER_S)
            pipe.zremrangebyscore(NODES, 0, now - FORGET_AFTER_S)
            draining = pipe.execute()[3]
        if draining and now - drain_renewed[0] > DRAIN_RENEW_S:
            worker_draining(node, draining=True)
            drain_renewed[0] = now
        elif not draining:
            drain_renewed[0] = 0.0

    def run() -> None:
        changed_publish()
        while not _stopped.is_set():
            _safely(sample)
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=run, name="coreboard-node-sampler", daemon=True).start()


# --- read by the overview --------------------------------------------------------------------


def _node_state(*, lost: bool, data: dict[str, str], busy: int) -> str:
    if lost:
        return "lost"
    if data.get("stopping"):
        return "stopping"
    if data.get("draining"):
        return "draining" if busy else "drained"
    return "active"


def cluster_state(conn: redis.Redis | None = None) -> dict[str, Any]:
    """Nodes (with their info, state and per-core CPU), processes with their state, chunks
    finished per second, and this (web) process's code version and kinds to compare with."""
    conn = conn or client()
    now = time.time()
    procs: list[tuple[str, float]] = list(conn.zrange(PROCS, 0, -1, withscores=True))  # type: ignore[arg-type]
    nodes: list[tuple[str, float]] = list(conn.zrange(NODES, 0, -1, withscores=True))  # type: ignore[arg-type]
    pipe = conn.pipeline(transaction=False)
    for member, _ in procs:
        pipe.hgetall(_proc_key(member))
    for node, _ in nodes:
        pipe.hgetall(_node_key(node))
    seconds = list(range(int(now) - THROUGHPUT_WINDOW_S + 1, int(now) + 1))
    pipe.mget([_throughput_key(s) for s in seconds])
    results = pipe.execute()
    proc_hashes = results[: len(procs)]
    node_hashes = results[len(procs) : len(procs) + len(nodes)]
    counts = results[-1]
    lost_nodes = {
        node
        for (node, seen), data in zip(nodes, node_hashes, strict=True)
        if data and now - seen > LOST_AFTER_S
    }
    processes = []
    for (member, seen), data in zip(procs, proc_hashes, strict=True):
        if not data or now - seen > FORGET_AFTER_S:
            continue
        node = data.get("node") or member.split("|", 1)[0]
        # A process of a lost node is lost with it, however recently it beat.
        lost = now - seen > LOST_AFTER_S or node in lost_nodes
        processes.append(
            {
                "id": member,
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
    for process in processes:
        if process["state"] == "busy":
            busy[process["node"]] = busy.get(process["node"], 0) + 1
    web_kinds = set(kind_names())
    node_list = []
    for (node, seen), data in zip(nodes, node_hashes, strict=True):
        if not data or now - seen > FORGET_AFTER_S:
            continue
        lost = node in lost_nodes
        info = {key: json.loads(data.get(key) or "[]") for key in _LIST_FIELDS}
        node_kinds = set(info["kinds"])
        node_list.append(
            {
                "node": node,
                "host": data.get("host", node.partition("@")[2]),
                "cpus": info["cpus"],
                "lost": lost,
                "last_seen": seen,
                "state": _node_state(lost=lost, data=data, busy=busy.get(node, 0)),
                "draining": bool(data.get("draining")),
                "busy": busy.get(node, 0),
                "code_version": data.get("code_version", "unknown"),
                "coreboard_version": data.get("coreboard_version", "unknown"),
                "python_version": data.get("python_version", "unknown"),
                "kinds": info["kinds"],
                # Only a node that says which kinds it has can lack some.
                "missing_kinds": sorted(web_kinds - node_kinds) if "kinds" in data else [],
                "extra_kinds": sorted(node_kinds - web_kinds),
                "labels": info["labels"],
                "queues": info["queues"],
                "concurrency": int(data.get("concurrency") or 0) or None,
                "started": float(data["started"]) if data.get("started") else None,
            }
        )
    node_list.sort(key=lambda n: n["node"])
    return {
        "now": now,
        "web": {"code_version": code_version(), "kinds": sorted(web_kinds)},
        "nodes": node_list,
        "processes": processes,
        "throughput": [
            [second, int(count or 0)] for second, count in zip(seconds, counts, strict=True)
        ],
    }


def node_get(node: str, conn: redis.Redis | None = None) -> dict[str, Any] | None:
    """One node as cluster_state shows it, or None when it is not (or no longer) known."""
    nodes: list[dict[str, Any]] = cluster_state(conn)["nodes"]
    for entry in nodes:
        if entry["node"] == node:
            return entry
    return None
