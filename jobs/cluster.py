"""Live cluster state in Redis: worker-process heartbeats, per-core CPU, chunk throughput.

High-rate, short-lived state lives here, not in PostgreSQL. Worker processes write it
(heartbeat threads, a CPU sampler in each worker's main process, a counter per finished
chunk); pages read it once a second through the overview socket. A process whose
heartbeat stops is shown as lost after LOST_AFTER_S and forgotten after FORGET_AFTER_S.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import psutil
import redis
from django.conf import settings

from jobs import redis_clients

logger = logging.getLogger(__name__)

PROCS = "coreboard:procs"
NODES = "coreboard:nodes"
HEARTBEAT_S = 1.0
LOST_AFTER_S = 3.5
FORGET_AFTER_S = 600
THROUGHPUT_WINDOW_S = 300
THROUGHPUT_TTL_S = THROUGHPUT_WINDOW_S + 60


def _proc_key(member: str) -> str:
    return f"coreboard:proc:{member}"


def _node_key(host: str) -> str:
    return f"coreboard:node:{host}"


def _throughput_key(second: int) -> str:
    return f"coreboard:throughput:{second}"


_state: dict[str, Any] = {}
_finished: dict[int, int] = {}
_lock = threading.Lock()
_wake = threading.Event()
_heartbeat_started = threading.Event()


def client() -> redis.Redis:
    return redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)


def _member() -> str:
    return f"{socket.gethostname()}|{os.getpid()}"


def _pinned_core() -> int | None:
    """The core this process is pinned to, if its affinity is a single core."""
    try:
        affinity = psutil.Process().cpu_affinity()
    except (AttributeError, psutil.Error):
        return None
    return affinity[0] if affinity and len(affinity) == 1 else None


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
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "state": state.get("state", "idle"),
        "job_id": state.get("job_id", ""),
        "chunk_index": state.get("chunk_index", ""),
        "since": state.get("since", time.time()),
        "core": "" if core is None else core,
    }
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
        member = _member()
        pipe = client().pipeline(transaction=False)
        pipe.zrem(PROCS, member)
        pipe.delete(_proc_key(member))
        pipe.execute()

    _safely(forget)


def node_forget() -> None:
    def forget() -> None:
        host = socket.gethostname()
        pipe = client().pipeline(transaction=False)
        pipe.zrem(NODES, host)
        pipe.delete(_node_key(host))
        pipe.execute()

    _safely(forget)


def _safely(write: Any) -> None:
    # Live state is best effort: a Redis hiccup must never fail a chunk.
    try:
        write()
    except redis.RedisError:
        logger.warning("could not update live cluster state", exc_info=True)


def _loop(every: float, step: Any, name: str) -> None:
    def run() -> None:
        while True:
            _safely(step)
            time.sleep(every)

    threading.Thread(target=run, name=name, daemon=True).start()


def start_heartbeat() -> None:
    """In each worker child process: write its state when it changes, and at least every
    second as a heartbeat."""
    process_idle()
    _heartbeat_started.set()

    def run() -> None:
        while True:
            _wake.clear()
            _safely(_write_heartbeat)
            _wake.wait(HEARTBEAT_S)

    threading.Thread(target=run, name="coreboard-heartbeat", daemon=True).start()


def start_node_sampler() -> None:
    """In each worker's main process: sample per-core CPU use about once a second."""
    psutil.cpu_percent(percpu=True)  # the first call only primes the counters

    def sample() -> None:
        host = socket.gethostname()
        cpus = psutil.cpu_percent(percpu=True)
        pipe = client().pipeline(transaction=False)
        pipe.hset(_node_key(host), mapping={"cpus": json.dumps(cpus), "updated": time.time()})
        pipe.expire(_node_key(host), FORGET_AFTER_S)
        pipe.zadd(NODES, {host: time.time()})
        # Forgetting silent processes and machines is done here, once a second per
        # machine, rather than by every open overview.
        pipe.zremrangebyscore(PROCS, 0, time.time() - FORGET_AFTER_S)
        pipe.zremrangebyscore(NODES, 0, time.time() - FORGET_AFTER_S)
        pipe.execute()

    _loop(HEARTBEAT_S, sample, "coreboard-cpu-sampler")


# --- read by the overview --------------------------------------------------------------------


def cluster_state(conn: redis.Redis | None = None) -> dict[str, Any]:
    """Nodes with per-core CPU, processes with their state, and chunks finished per second."""
    conn = conn or client()
    now = time.time()
    procs: list[tuple[str, float]] = list(conn.zrange(PROCS, 0, -1, withscores=True))  # type: ignore[arg-type]
    nodes: list[tuple[str, float]] = list(conn.zrange(NODES, 0, -1, withscores=True))  # type: ignore[arg-type]
    pipe = conn.pipeline(transaction=False)
    for member, _ in procs:
        pipe.hgetall(_proc_key(member))
    for host, _ in nodes:
        pipe.hgetall(_node_key(host))
    seconds = list(range(int(now) - THROUGHPUT_WINDOW_S + 1, int(now) + 1))
    pipe.mget([_throughput_key(s) for s in seconds])
    results = pipe.execute()
    proc_hashes = results[: len(procs)]
    node_hashes = results[len(procs) : len(procs) + len(nodes)]
    counts = results[-1]
    processes = []
    for (_, seen), data in zip(procs, proc_hashes, strict=True):
        if not data:
            continue
        lost = now - seen > LOST_AFTER_S
        processes.append(
            {
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
    processes.sort(key=lambda p: (p["host"], p["pid"]))
    node_list = []
    for (host, seen), data in zip(nodes, node_hashes, strict=True):
        node_list.append(
            {
                "host": host,
                "cpus": json.loads(data.get("cpus", "[]")),
                "lost": now - seen > LOST_AFTER_S,
            }
        )
    return {
        "now": now,
        "nodes": node_list,
        "processes": processes,
        "throughput": [
            [second, int(count or 0)] for second, count in zip(seconds, counts, strict=True)
        ],
    }
