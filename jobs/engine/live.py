"""This worker process's live reporting: what it is doing, the chunks it finished, its
machine's per-core CPU use, and the threads that beat them into the worker registry
(jobs.engine.workers) every HEARTBEAT_S.

The calls on a chunk's path (`process_running`, `process_idle`, `chunk_finished`) only
touch memory and wake the heartbeat thread; in a process without one (not a worker) they
do nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import redis

from jobs.engine import workers
from jobs.protocol import NodeInfo

logger = logging.getLogger(__name__)

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


def _pinned_core() -> int | None:
    """The core this process is pinned to, if its affinity is a single core."""
    try:
        affinity = psutil.Process().cpu_affinity()
    except (AttributeError, psutil.Error):
        return None
    return affinity[0] if affinity and len(affinity) == 1 else None


def _safely(write: Callable[[], Any]) -> None:
    # Live state is best effort: a Redis hiccup must never fail a chunk.
    try:
        write()
    except redis.RedisError:
        logger.warning("could not update live cluster state", exc_info=True)


# --- a worker process ------------------------------------------------------------------------


def _write_heartbeat() -> None:
    """One round trip: this process's state, its heartbeat, and the chunks it finished."""
    with _lock:
        finished = dict(_finished)
        _finished.clear()
    state = dict(_state)
    core = _pinned_core()
    fields = {
        "node": workers.this_node(),
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
        workers.process_beat(workers.process_id(), fields=fields, finished=finished)


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
            workers.process_forget(workers.process_id())

    _safely(forget)


def start_heartbeat() -> None:
    """In each worker child process: write its state when it changes, and at least every
    HEARTBEAT_S as a heartbeat."""
    process_idle()
    _heartbeat_started.set()

    def run() -> None:
        while not _stopped.is_set():
            _wake.clear()
            _safely(_write_heartbeat)
            _wake.wait(workers.HEARTBEAT_S)

    threading.Thread(target=run, name="coreboard-heartbeat", daemon=True).start()


# --- a worker's main process -------------------------------------------------------------------


def node_stopping() -> None:
    """Warm shutdown began: the node's slots finish their current chunks, then it leaves."""
    # Called from a signal handler: one Redis write, no channel-layer round trip (open
    # pages see it at their next tick).
    _safely(lambda: workers.node_draining_set(workers.this_node(), draining="stop"))


def node_forget() -> None:
    """A worker's main process stopping cleanly removes its node and all of its processes
    at once (prefork children do not reliably run their own exit hooks), and tells open
    overviews, so nothing of it shows as lost."""

    def forget() -> None:
        with _write_lock:
            _stopped.set()
            workers.node_leave(workers.this_node(), process=workers.process_id())

    _safely(forget)
    workers.changed_publish()


def start_node_sampler(*, info: NodeInfo, on_displaced: Callable[[str], None]) -> None:
    """In each worker's main process: beat the node (its info, per-core CPU use) every
    HEARTBEAT_S. A node starts active: an operator's drain ends with the worker.

    A beat refused because another process holds the name (this worker was cut off for
    longer than the name's lease, FORGET_AFTER_S, and another machine's worker took it)
    calls `on_displaced` with the holder, once, and beats no more: two workers never
    share one card."""
    node = workers.this_node()
    psutil.cpu_percent(percpu=True)  # the first call only primes the counters
    _safely(lambda: workers.node_start(node))

    def sample() -> None:
        cpus = psutil.cpu_percent(percpu=True)
        with _write_lock:
            if _stopped.is_set():
                return
            holder = workers.node_beat(node, info=info, cpus=cpus)
            if holder is None:
                return
            _stopped.set()
        logger.error(
            "node name %s is now held by %s: this worker was cut off from Redis for longer "
            "than the name's lease (%s s) and another worker took the name; stopping",
            node,
            holder,
            workers.FORGET_AFTER_S,
        )
        on_displaced(holder)

    def run() -> None:
        _safely(sample)
        workers.changed_publish()
        while not _stopped.is_set():
            time.sleep(workers.HEARTBEAT_S)
            _safely(sample)

    threading.Thread(target=run, name="coreboard-node-sampler", daemon=True).start()
