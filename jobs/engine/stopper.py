"""Stopping a chunk that does not stop by itself: a cancelled job's, or one past its time limit.

A chunk notices a cancel only when it calls `progress`; one that spins in `while True:
pass` never does, and holds its process (and the GIL of it) until Celery's time limit. So
the worker's MAIN process, which forked the pool and is outside the chunk's GIL, ends such
a child itself:

- Each prefork child writes which chunk it runs into its entry of a small shared-memory
  board (`_Board`, an anonymous shared mapping the main process makes before the pool
  forks; the entry is the child's billiard index, so a replacement child reuses it). That
  is two memory writes per chunk: no Redis or database round trip on the chunk's path.
- A thread of the main process (`start_stopper`) reads the board every POLL_S; for the
  busy entries it asks PostgreSQL once which of their jobs are no longer running, and
  compares each chunk's start with its time limit (in the entry).
- For a chunk to stop it first records the chunk's outcome (jobs.engine.chunks.chunk_stop:
  `cancelled`, or failed for good with the time-limit message), under the job's lock and
  only while the chunk is still running under that child's lease, so the chunk is never
  counted as a lost run nor run twice. Then it writes the chunk's id into the child's
  entry as a stop request and sends SIGTERM; SIGKILL follows COREBOARD_KILL_GRACE_MS later
  if the child is still on that chunk.
- The child's SIGTERM handler (installed at its first chunk, after billiard's own) dies at
  once (SIG_DFL) only while it still runs the chunk the request names; a child that moved
  on ignores it, so a stop never hits the next chunk. A SIGTERM that is no stop request
  (the pool shutting down) goes to billiard's handler as before.
- Celery's prefork pool replaces the dead child, and acks_late + reject_on_worker_lost
  redeliver its slot message: the redelivered slot takes over its registry entry
  (jobs.engine.slot_registry.slot_begin) and ends, the job being over, or claims the next
  chunk. The main process removes the dead child from the worker registry at once, so the
  overview never shows it busy or lost, and asks the pool to replace it at once (the
  pool's own watch on its children's exits missed one of two children stopped together
  here and replaced it only at its 5 s maintenance timer).

Celery's own `revoke(terminate=True)` / `Request.terminate` is not used: it kills through
the same `os.kill`, but a terminated request's message is neither acknowledged nor
requeued (Celery's `Request.on_failure` returns early for `Terminated`), which would hold
a prefetch slot until the broker's visibility timeout, and a revoke marks the task id
revoked, so a redelivered slot that should go on (time limit) would be dropped.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import signal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psutil
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from jobs.engine import workers
from jobs.engine.chunks import chunk_stop
from jobs.engine.output import NOTHING, live_captured
from jobs.models import Job

logger = logging.getLogger(__name__)

POLL_S = 0.25
# pid, job id, chunk id, chunk index, start (CLOCK_MONOTONIC, system-wide), limit (s),
# stop request (a chunk id; 0: none).
_ENTRY = struct.Struct("=qqqqddq")
# Billiard indexes a pool's children 0..n-1 and gives a replacement its predecessor's
# index; autoscaling may go past the starting concurrency.
BOARD_ENTRIES = 1024


@dataclass(frozen=True)
class BoardEntry:
    """What one pool child runs now (chunk_id 0: no chunk)."""

    slot: int
    pid: int
    job_id: int
    chunk_id: int
    index: int
    started: float
    limit_s: float
    stop_request: int


class _Board:
    def __init__(self, entries: int) -> None:
        self.entries = entries
        # MAP_SHARED and anonymous: inherited by every child forked after this.
        self.memory = mmap.mmap(-1, entries * _ENTRY.size)

    def read(self, slot: int) -> BoardEntry:
        return BoardEntry(slot, *_ENTRY.unpack_from(self.memory, slot * _ENTRY.size))

    def write(self, slot: int, *values: Any) -> None:
        _ENTRY.pack_into(self.memory, slot * _ENTRY.size, *values)

    def busy(self) -> list[BoardEntry]:
        """The entries of children that run a chunk now (one pass over a copy)."""
        return [
            BoardEntry(slot, *values)
            for slot, values in enumerate(_ENTRY.iter_unpack(self.memory[:]))
            if values[2] and values[0]
        ]

    def stop_request_set(self, slot: int, chunk_id: int) -> None:
        offset = slot * _ENTRY.size + _ENTRY.size - 8
        struct.pack_into("=q", self.memory, offset, chunk_id)


_board: _Board | None = None
# In a child: its entry, and whether its SIGTERM handler is in place (by pid: a fork
# inherits the module's state).
_child: dict[str, Any] = {"slot": None, "pid": 0, "handler_pid": 0, "previous": None}


def board_create(entries: int = BOARD_ENTRIES) -> None:
    """In a worker's main process, before the pool forks: the board every child writes."""
    global _board
    _board = _Board(entries)


def board_busy() -> list[tuple[int, int]]:
    """In a worker's main process: (pid, job id) of each pool child running a chunk now."""
    if _board is None:
        return []
    return [(entry.pid, entry.job_id) for entry in _board.busy()]


def child_init(*, slot: int | None) -> None:
    """In a pool child: its entry on the board (its billiard index), if it has one."""
    usable = _board is not None and slot is not None and 0 <= slot < _board.entries
    _child.update(slot=slot if usable else None, pid=os.getpid())
    if slot is not None and not usable and _board is not None:
        logger.warning("pool child %s has no stop board entry: its chunks cannot be stopped", slot)


def _slot_here() -> int | None:
    if _child["pid"] != os.getpid():
        return None
    slot: int | None = _child["slot"]
    return slot


def chunk_begin(*, job_id: int, chunk_id: int, index: int, limit_s: float) -> None:
    """A chunk starts in this child: on the board, with its time limit."""
    slot = _slot_here()
    if slot is None or _board is None:
        return
    if _child["handler_pid"] != os.getpid():
        _handler_install()
    _board.write(slot, os.getpid(), job_id, chunk_id, index, time.monotonic(), limit_s, 0)


def chunk_end() -> None:
    """The chunk ended (however) in this child."""
    slot = _slot_here()
    if slot is None or _board is None:
        return
    _board.write(slot, os.getpid(), 0, 0, 0, 0.0, 0.0, 0)


def _handler_install() -> None:
    # At the first chunk, not at worker_process_init: billiard replaces SIGTERM's handler
    # after that signal (billiard.common.reset_signals), and a chunk runs in the child's
    # main thread, the only one that may set a handler.
    _child["previous"] = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _child["handler_pid"] = os.getpid()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    slot = _slot_here()
    entry = _board.read(slot) if slot is not None and _board is not None else None
    if entry is not None and entry.stop_request:
        if entry.stop_request != entry.chunk_id:
            return  # moved on to another chunk since: the stop was for the old one
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    previous = _child["previous"]
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    os.kill(os.getpid(), signal.SIGTERM)


# --- the main process -----------------------------------------------------------------------


def time_limit_message(index: int, limit_s: float) -> str:
    return f"Chunk {index} ran past its time limit of {limit_s:g} s; its process was stopped."


def _alive(pid: int) -> bool:
    """Running (a dead child the pool has not reaped yet is a zombie: not alive)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


@dataclass
class _Stopping:
    entry: BoardEntry
    kill_at: float


class Stopper:
    """The main process's side: find chunks to stop on the board, record, signal."""

    def __init__(
        self, board: _Board, node: str, on_child_gone: Callable[[], None] = lambda: None
    ) -> None:
        self.board = board
        self.node = node
        self.on_child_gone = on_child_gone
        self.grace_s = settings.COREBOARD_KILL_GRACE_MS / 1000
        self.stopping: dict[int, _Stopping] = {}

    def busy(self) -> list[BoardEntry]:
        return self.board.busy()

    def tick(self) -> list[BoardEntry]:
        """One look: the entries whose chunks were stopped in it."""
        self._follow_up()
        busy = [entry for entry in self.busy() if entry.pid not in self.stopping]
        if not busy:
            return []
        over = set(
            Job.objects.filter(pk__in={entry.job_id for entry in busy})
            .exclude(status=Job.Status.RUNNING)
            .values_list("pk", flat=True)
        )
        now = time.monotonic()
        stopped = []
        for entry in busy:
            if entry.job_id in over:
                error = None
            elif entry.limit_s and now - entry.started > entry.limit_s:
                error = time_limit_message(entry.index, entry.limit_s)
            else:
                continue
            if self.stop(entry, error=error):
                stopped.append(entry)
        return stopped

    def stop(self, entry: BoardEntry, *, error: str | None) -> bool:
        process = workers.process_id(node=self.node, pid=entry.pid)
        recorded = chunk_stop(
            job_id=entry.job_id,
            chunk_id=entry.chunk_id,
            process=process,
            error=error,
            # What it printed up to its last flush: the process ends before it can record.
            output=live_captured(entry.job_id, entry.index) or NOTHING,
        )
        if not recorded:
            return False
        # Only while the child is still on that chunk: otherwise it moved on by itself.
        self.board.stop_request_set(entry.slot, entry.chunk_id)
        if not self._still_on(entry):
            self.board.stop_request_set(entry.slot, 0)
            return False
        logger.warning(
            "stopping chunk %s of job %s in process %s (%s)",
            entry.index,
            entry.job_id,
            entry.pid,
            "its time limit" if error else "its job is over",
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry.pid, signal.SIGTERM)
        self.stopping[entry.pid] = _Stopping(entry, time.monotonic() + self.grace_s)
        return True

    def _still_on(self, entry: BoardEntry) -> bool:
        now = self.board.read(entry.slot)
        return now.pid == entry.pid and now.chunk_id == entry.chunk_id

    def _follow_up(self) -> None:
        """Children told to stop: gone (forget them in the registry), or still on the
        chunk after the grace (SIGKILL)."""
        for pid, stopping in list(self.stopping.items()):
            entry = stopping.entry
            if not _alive(pid):
                del self.stopping[pid]
                if self.board.read(entry.slot).pid == pid:
                    self.board.write(entry.slot, 0, 0, 0, 0, 0.0, 0.0, 0)
                workers.process_forget(workers.process_id(node=self.node, pid=pid))
                workers.changed_publish()
                self.on_child_gone()
                continue
            if not self._still_on(entry):
                # It left the chunk (a handler ignored the stop): nothing more to do.
                del self.stopping[pid]
                self.board.stop_request_set(entry.slot, 0)
                continue
            if time.monotonic() >= stopping.kill_at:
                logger.warning("process %s ignored SIGTERM; SIGKILL", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                stopping.kill_at = float("inf")


def start_stopper(node: str, *, on_child_gone: Callable[[], None]) -> Stopper | None:
    """In a worker's main process: look for chunks to stop every POLL_S. `on_child_gone`
    is called (in this thread) once a stopped child is gone: the pool replaces it."""
    if _board is None:
        return None
    stopper = Stopper(_board, node, on_child_gone)

    def run() -> None:
        while True:
            try:
                close_old_connections()
                stopper.tick()
            except DatabaseError as error:
                logger.warning("stopper: %s", error)
                connection.close()
            except Exception:
                logger.exception("stopper pass failed")
            time.sleep(POLL_S)

    threading.Thread(target=run, name="coreboard-stopper", daemon=True).start()
    return stopper
