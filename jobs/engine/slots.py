"""Running one slot in a worker process: claim chunks, run them back to back, record them.

A slot runs its job's chunks one after another in this process's main thread, while the
process's bookkeeping thread (jobs.engine.bookkeeping) claims the next ones before those
in hand run out and records outcomes (at most every COREBOARD_FLUSH_MS), so no chunk
waits for a round trip. It goes on until the job has nothing left or its time slice
(COREBOARD_SLOT_SLICE_MS) is over while other messages of its priority or a higher one
wait, or, at any batch boundary, a higher priority's slot waits; then it puts itself back
at the end of its queue at its job's priority, so several people's jobs interleave and an
urgent one goes first. Live pages hear of a chunk as
it starts (a long one) and as it ends, not when it is recorded.

A slot that reaches a worker without its job's kind (two kinds routed to one queue, or a
stale message) claims nothing and ends: no chunk's budget is touched, and the reconciler
sends the job a new slot on its kind's queue.

A slot runs only while its registry entry is its own (jobs.engine.slot_registry): a
duplicate message, or one beyond the job's parallelism, does not begin, and a running
slot whose entry is gone (Redis lost its data) or taken over learns it with its claim
permit at the next batch boundary, records its batch and ends ("disowned").

The batch grows while chunks are short: it aims at COREBOARD_BATCH_TARGET_MS of work per
claim, so a 1 ms chunk does not pay a transaction of its own, while progress, cancel
checks and live events stay per chunk; and it shrinks as the job nears its end, so no
process takes the last chunks while the others have none.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db import (
    DatabaseError,
    close_old_connections,
    connection,
)
from django.utils import timezone

from jobs import kinds, options, protocol
from jobs.engine import (
    bookkeeping,
    dispatch,
    events,
    output,
    resources,
    slot_registry,
    stopper,
    workers,
)
from jobs.engine.chunks import (
    Captured,
    Claim,
    Claimer,
    Done,
    Outcome,
    Raised,
    Stopped,
    job_start_if_pending,
    job_status,
    leases_renew,
)
from jobs.engine.culprits import json_text, kind_traceback, not_json_message
from jobs.models import Job
from jobs.protocol import ChunkDelta

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Where a slot's time went, logged as it ends (JSON after this prefix; the benchmark's
# per-batch breakdown reads it from the worker's output).
SLOT_FIGURES = "slot figures: "


class ChunkCancelled(Exception):
    """Raised from a progress call when the chunk's job is no longer running."""


@dataclass
class SlotHooks:
    """Telemetry the Celery adapter plugs in (kept out of the accounting code)."""

    chunk_started: Callable[[int, int], None] = lambda job_id, index: None
    chunk_finished: Callable[[], None] = lambda: None
    idle: Callable[[], None] = lambda: None


class SlotPace:
    """What a slot does at most so often, however short its chunks: look at the job's
    status (every COREBOARD_CANCEL_POLL_MS; cancellation lives in the database, not
    in Celery revokes) and publish a chunk's progress (COREBOARD_PROGRESS_INTERVAL_MS).

    In a slot the bookkeeping thread looks, and sets `over`: a progress call reads a flag.
    Without one (a chunk run alone) the call looks itself; a database hiccup skips a look.
    """

    def __init__(self, job_id: int, over: threading.Event | None = None) -> None:
        self.job_id = job_id
        self.over = over
        # Read once per slot: these are asked at every progress call.
        self._check_every_s = settings.COREBOARD_CANCEL_POLL_MS / 1000
        self._publish_every_s = settings.COREBOARD_PROGRESS_INTERVAL_MS / 1000
        self._next_check = time.monotonic() + self._check_every_s
        self._next_publish = 0.0

    def check_cancelled(self) -> None:
        if self.over is not None:
            if self.over.is_set():
                raise ChunkCancelled
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every_s
        try:
            status = job_status(job_id=self.job_id)
        except DatabaseError:
            connection.close()
            return
        if status != Job.Status.RUNNING:
            raise ChunkCancelled

    def publish_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_publish:
            return False
        self._next_publish = now + self._publish_every_s
        return True


class ChunkProgress:
    """The `progress(done, total)` callable handed to a kind's `run`."""

    def __init__(self, job_id: int, index: int, pace: SlotPace) -> None:
        self.job_id = job_id
        self.index = index
        self.pace = pace

    def __call__(self, done: float, total: float) -> None:
        self.pace.check_cancelled()
        if self.pace.publish_due():
            fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
            events.chunk_progressed(self.job_id, self.index, fraction)


# --- the keepalive thread: leases and the slot's registry entry --------------------------------


# How many keepalive beats between checks of its database connection's age and health.
CONNECTION_CHECK_BEATS = 60


class _Keepalive:
    """Renews the leases of the chunks this process's running slot holds, and that slot's
    registry entry, every HEARTBEAT_S.

    Leases are renewed per chunk, not per process: a slot says which chunks it holds as it
    claims them (`hold`) and lets go of them as it records them (`let_go`), so a chunk
    that a slot left behind (a slot ended by an error) is not kept alive by whatever the
    process runs next: it is released as the slot ends, or its lease expires.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.slot: tuple[int, str, str, str] | None = None
        # The process id the held chunks are leased to, and the chunks.
        self.process = ""
        self.chunks: set[int] = set()
        threading.Thread(target=self._run, name="coreboard-keepalive", daemon=True).start()

    def _run(self) -> None:
        beats = 0
        while True:
            time.sleep(workers.HEARTBEAT_S)
            beats += 1
            try:
                self.beat()
                # As Django does after a request: this thread's connection is closed once
                # older than CONN_MAX_AGE or broken. Not after every beat: each call makes
                # the next use check the connection first (a second round trip a second,
                # and the GIL taken from the running chunk twice); a broken one is closed
                # as it fails. Only while it holds something: an idle process's thread
                # touches no database.
                if beats % CONNECTION_CHECK_BEATS == 0 and self.busy():
                    close_old_connections()
            except Exception:
                # The thread must outlive any failure (the check connects, so it fails
                # while PostgreSQL is down), or no lease here is renewed again.
                connection.close()
                logger.warning("keepalive beat failed", exc_info=True)

    def beat(self) -> None:
        with self.lock:
            slot, process, chunks = self.slot, self.process, list(self.chunks)
        # Apart: leases live in PostgreSQL, and a Redis outage must not let them expire
        # under chunks that keep running.
        try:
            if slot is not None:
                slot_registry.slot_refresh(*slot)
        except Exception as error:
            logger.warning("could not refresh slot: %s", error)
        try:
            if chunks:
                leases_renew(process=process, chunk_ids=chunks)
        except DatabaseError:
            connection.close()
            logger.warning("could not renew leases", exc_info=True)

    def running(self, job_id: int, token: str, node: str, process: str) -> None:
        with self.lock:
            self.slot = (job_id, token, node, process)

    def stopped(self) -> None:
        with self.lock:
            self.slot = None

    def hold(self, process: str, chunk_ids: Iterable[int]) -> None:
        with self.lock:
            self.process = process
            self.chunks.update(chunk_ids)

    def let_go(self, chunk_ids: Iterable[int]) -> None:
        with self.lock:
            self.chunks.difference_update(chunk_ids)

    def busy(self) -> bool:
        with self.lock:
            return self.slot is not None or bool(self.chunks)

    def held(self) -> set[int]:
        with self.lock:
            return set(self.chunks)


_keepalive: _Keepalive | None = None


def _keepalive_here() -> _Keepalive:
    global _keepalive
    if _keepalive is None or _keepalive.pid != os.getpid():
        _keepalive = _Keepalive()
    return _keepalive


# --- the slot ----------------------------------------------------------------------------------


def slot_run(
    *,
    job_id: int,
    token: str,
    node: str,
    hooks: SlotHooks | None = None,
    worker_kinds: frozenset[str] | None = None,
    queues: Iterable[str] = (),
    priority: int | None = None,
) -> str:
    """Run one slot of a job in this process; how it ended (for logs and tests).

    `worker_kinds`: the kinds this worker runs (None: every kind registered here);
    `queues`: the queues it consumes, whose waiting messages make a slot yield;
    `priority`: the message priority it came with (None: its job's), which it keeps
    until it goes back to its queue, at its job's.
    """
    hooks = hooks or SlotHooks()
    queues = tuple(queues)
    process = workers.process_id(node=node)
    row = Job.objects.filter(pk=job_id).values_list("parallelism", "priority").first()
    if row is None:
        return slot_registry.STALE
    parallelism, job_priority = row
    home = dispatch.broker_priority(job_priority)
    step = home if priority is None else min(int(priority), home)
    began = slot_registry.slot_begin(job_id, token, node, process, parallelism=parallelism)
    if began != slot_registry.BEGUN:
        if began != slot_registry.STALE:
            logger.info("slot of job %s not run: %s", job_id, began)
        return began
    keepalive = _keepalive_here()
    keepalive.running(job_id, token, node, process)
    requeued = False
    chunk_s: float | None = None
    figures = bookkeeping.BatchFigures()
    ended = "error"
    try:
        while True:
            run = _SlotRun(
                job_id=job_id,
                token=token,
                process=process,
                node=node,
                hooks=hooks,
                worker_kinds=worker_kinds,
                queues=queues,
                step=step,
                chunk_s=chunk_s,
            )
            try:
                ended = run.run()
            finally:
                figures.add(run.books.figures)
            chunk_s = run.books.chunk_s
            if ended != "slice":
                return ended
            with keepalive.lock:
                keepalive.slot = None
            requeue = slot_registry.slot_requeue(
                job_id,
                token,
                dispatch.kind_queue(run.kind_name),
                priority=home,
                node=node,
                process=process,
            )
            requeued = requeue == slot_registry.REQUEUED
            if requeued:
                return ended
            if requeue == slot_registry.DISOWNED:
                return "disowned"
            # The queue could not take the slot back: keep working rather than drop it.
            keepalive.running(job_id, token, node, process)
    finally:
        keepalive.stopped()
        hooks.idle()
        if not requeued:
            slot_registry.slot_end(job_id, token, node, process)
        if figures.chunks:
            logger.info("%s%s", SLOT_FIGURES, figures.as_json(job_id=job_id, ended=ended))


class _SlotRun:
    def __init__(
        self,
        *,
        job_id: int,
        token: str | None = None,
        process: str,
        node: str,
        hooks: SlotHooks,
        worker_kinds: frozenset[str] | None = None,
        queues: tuple[str, ...] = (),
        step: int = dispatch.PRIORITY_STEPS[-1],
        chunk_s: float | None = None,
    ) -> None:
        """`step`: the slot's message priority (kombu's, 0 first); `chunk_s`: the job's
        chunks' pace so far (its slot's previous slice)."""
        self.job_id = job_id
        self.node = node
        self.hooks = hooks
        self.worker_kinds = worker_kinds
        self.kind_name = ""
        self.limit_s = 0
        self.worker = (node or socket.gethostname())[:255]  # Chunk.worker: the node
        self.pid = os.getpid()
        self.keepalive = _keepalive_here()
        self.books = bookkeeping.Bookkeeper(
            bookkeeping.SlotPlan(
                job_id=job_id,
                token=token,
                node=node,
                claimer=Claimer(process=process, worker=self.worker, pid=self.pid),
                yield_lists=tuple(
                    slot_registry.priority_lists(
                        queues, [each for each in dispatch.PRIORITY_STEPS if each <= step]
                    )
                ),
                outranked_lists=tuple(
                    slot_registry.priority_lists(
                        queues, [each for each in dispatch.PRIORITY_STEPS if each < step]
                    )
                ),
                slice_s=settings.COREBOARD_SLOT_SLICE_MS / 1000,
                hard_end=time.monotonic() + settings.COREBOARD_SLOT_MAX_S,
                flush_s=settings.COREBOARD_FLUSH_MS / 1000,
                batch_target_s=settings.COREBOARD_BATCH_TARGET_MS / 1000,
                cancel_poll_s=settings.COREBOARD_CANCEL_POLL_MS / 1000,
            ),
            self.keepalive,
        )
        self.books.chunk_s = chunk_s
        self.pace = SlotPace(job_id, self.books.over)
        # Chunks at least this long are shown running as they start (shorter ones finish
        # before a page could show them running).
        self.shown_running_s = settings.COREBOARD_PUBLISH_INTERVAL_MS / 1000
        # Once per process (a no-op after the first): stdout, stderr and logging go to the
        # running chunk's output.
        output.capture_install()

    @property
    def disowned(self) -> bool:
        return self.books.disowned

    def run(self) -> str:
        # An Exception that reaches here is the engine's (a kind's is an outcome): the
        # chunks go back without counting a lost run. Anything else (SystemExit from a
        # kind, a cold shutdown) counts it, as a lost process would: a chunk that keeps
        # ending its process this way is failed after COREBOARD_CHUNK_MAX_ATTEMPTS.
        try:
            ended = self._run()
        except BaseException as error:
            self.books.release_held(attempt_back=isinstance(error, Exception))
            raise
        self.books.release_held(attempt_back=True)
        return ended

    def _run(self) -> str:
        job = self.books.database(
            lambda: (
                Job.objects.filter(pk=self.job_id)
                .values("kind", "status", "chunk_time_limit_s")
                .first()
            )
        )
        if job is None or job["status"] not in Job.ACTIVE_STATUSES:
            return "over"
        self.kind_name = job["kind"]
        try:
            kind = kinds.get(job["kind"])
        except kinds.UnknownKind:
            return "lacks-kind"
        if self.worker_kinds is not None and kind.name not in self.worker_kinds:
            return "lacks-kind"
        self.limit_s = options.chunk_time_limit_s(kind, job["chunk_time_limit_s"])
        # Each chunk claimed records the code that runs it here: what computed its result.
        plan = self.books.plan
        self.books.plan = replace(
            plan,
            claimer=replace(
                plan.claimer,
                kind_source=kinds.version(kind.name).source,
                coreboard_commit=workers.coreboard_commit(),
            ),
        )
        if job["status"] == Job.Status.PENDING:
            self.books.database(lambda: job_start_if_pending(job_id=self.job_id))
        books = self.books
        books.start()
        started = time.perf_counter()
        try:
            while (claim := books.take()) is not None:
                began = time.perf_counter()
                outcome = self._run_one(kind, claim)
                books.put(outcome, time.perf_counter() - began)
        except BaseException:
            books.abort()
            raise
        finally:
            books.figures.loop_s += time.perf_counter() - started
        return books.close()

    def _claimed_state(self, claim: Claim) -> ChunkDelta:
        return protocol.chunk_claimed_delta(
            index=claim.index,
            attempts=claim.attempts,
            worker=self.worker,
            pid=self.pid,
            at=timezone.now().isoformat(),
        )

    def _done_state(self, claim: Claim, done: Done) -> ChunkDelta:
        usage = done.usage
        return protocol.chunk_done_delta(
            index=claim.index,
            attempts=claim.attempts,
            worker=self.worker,
            pid=self.pid,
            claimed_at=claim.claimed_at,
            started_at=done.started_at,
            finished_at=done.finished_at,
            cpu_seconds=done.cpu_seconds,
            cpu_user_s=usage.cpu_user_s if usage else None,
            cpu_system_s=usage.cpu_system_s if usage else None,
            start_rss=usage.start_rss if usage else None,
            peak_rss=usage.peak_rss if usage else None,
            output_bytes=done.output.total_bytes,
        )

    def _run_one(self, kind: kinds.JobKind, claim: Claim) -> Outcome:
        if claim.runs_lost >= settings.COREBOARD_CHUNK_MAX_ATTEMPTS:
            return Raised(
                claim.id,
                f"Chunk {claim.index} was started {claim.runs_lost} times without finishing "
                "(its worker process was lost each time); giving up.",
                final=True,
            )
        try:
            self.pace.check_cancelled()
        except ChunkCancelled:
            return Stopped(claim.id)
        self.hooks.chunk_started(self.job_id, claim.index)
        if (self.books.chunk_s or self.shown_running_s) >= self.shown_running_s:
            events.chunks_changed(self.job_id, [self._claimed_state(claim)])
        output.chunk_output_begin(self.job_id, claim.index)
        started_at: datetime = timezone.now()
        began = time.perf_counter()
        # The worker's main process stops the chunk if it outlives its job or its limit.
        stopper.chunk_begin(
            job_id=self.job_id, chunk_id=claim.id, index=claim.index, limit_s=self.limit_s
        )
        meter = resources.ChunkMeter()
        try:
            result = kind.run(claim.spec, ChunkProgress(self.job_id, claim.index, self.pace))
        except ChunkCancelled:
            usage, captured = self._ended(meter, began)
            return Stopped(claim.id, usage, captured)
        except Exception as error:
            usage, captured = self._ended(meter, began)
            return Raised(
                claim.id,
                kind_traceback(kind, error),
                started_at,
                timezone.now(),
                usage=usage,
                output=captured,
            )
        usage, captured = self._ended(meter, began)
        # Encoded once: this checks the partial is JSON and is what gets stored. One that
        # is not fails at once, for good: it would fail the same way on every retry.
        result_json = json_text(result)
        if result_json is None:
            return Raised(
                claim.id,
                not_json_message(
                    kind, result, what=f"the partial result of chunk {claim.index}", root="partial"
                ),
                started_at,
                timezone.now(),
                final=True,
                usage=usage,
                output=captured,
            )
        self.hooks.chunk_finished()
        done = Done(
            claim.id,
            result,
            usage.cpu_seconds,
            started_at,
            timezone.now(),
            result_json,
            usage,
            captured,
        )
        events.chunks_changed(self.job_id, [self._done_state(claim, done)])
        return done

    def _ended(self, meter: resources.ChunkMeter, began: float) -> tuple[resources.Usage, Captured]:
        self.books.figures.run_s += time.perf_counter() - began
        stopper.chunk_end()
        usage = meter.stop()
        captured = output.chunk_output_end()
        return usage, captured
