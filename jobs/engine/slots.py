"""Running one slot in a worker process: claim chunks, run them back to back, record them.

A slot claims a batch of the job's pending chunks, runs them one after another in this
process and records their outcomes in one transaction (at most every
COREBOARD_FLUSH_MS while a batch runs), then claims again, until the job has nothing left
or its time slice (COREBOARD_SLOT_SLICE_MS) is over while other messages wait; then it
puts itself back at the end of the queue, so several people's jobs interleave.

A slot that reaches a worker without its job's kind (two kinds routed to one queue, or a
stale message) claims nothing and ends: no chunk's budget is touched, and the reconciler
sends the job a new slot on its kind's queue.

A slot runs only while its registry entry is its own (jobs.engine.slot_registry): a
duplicate message, or one beyond the job's parallelism, does not begin, and a running
slot whose entry is gone (Redis lost its data) or taken over learns it with its claim
permit at the next batch boundary, records its batch and ends ("disowned").

The batch grows while chunks are short: it aims at COREBOARD_BATCH_TARGET_MS of work per
claim, so a 1 ms chunk does not pay a transaction of its own, while progress, cancel
checks and live events stay per chunk.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from django.utils import timezone

from jobs import kinds, options, protocol
from jobs.engine import dispatch, events, output, resources, slot_registry, stopper, workers
from jobs.engine.chunks import (
    Captured,
    Claim,
    Claimer,
    Done,
    Outcome,
    Raised,
    Recorded,
    Stopped,
    chunks_claim,
    chunks_record,
    job_start_if_pending,
    job_status,
    leases_release,
    leases_renew,
)
from jobs.engine.culprits import json_text, kind_traceback, not_json_message
from jobs.models import Chunk, Job
from jobs.protocol import ChunkDelta

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
# A batch's outcomes are recorded early once they hold this much chunk output: chatty
# chunks must not pile up a flush interval's worth of it (up to 64 KB each) in memory.
OUTPUT_FLUSH_CHARS = 1024 * 1024
# How long a slot with nothing claimable waits for a chunk whose retry is due.
RETRY_WAIT_MAX_S = 2.0
# A slot outlives a database that does not answer (a restart, a failover) for this long,
# trying again at most every DATABASE_RETRY_MAX_S, then ends (its chunks' leases expire,
# and the reconciler sends a new slot once the database answers).
DATABASE_PATIENCE_S = 120.0
DATABASE_RETRY_MAX_S = 0.5

T = TypeVar("T")


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
    A database hiccup skips one look."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        # Read once per slot: these are asked at every progress call.
        self._check_every_s = settings.COREBOARD_CANCEL_POLL_MS / 1000
        self._publish_every_s = settings.COREBOARD_PROGRESS_INTERVAL_MS / 1000
        self._next_check = time.monotonic() + self._check_every_s
        self._next_publish = 0.0

    def check_cancelled(self) -> None:
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
        while True:
            time.sleep(workers.HEARTBEAT_S)
            self.beat()
            # As Django does after a request: this thread's connection is closed once
            # older than CONN_MAX_AGE or broken.
            close_old_connections()

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
) -> str:
    """Run one slot of a job in this process; how it ended (for logs and tests).

    `worker_kinds`: the kinds this worker runs (None: every kind registered here);
    `queues`: the queues it consumes, whose waiting messages make a slot yield.
    """
    hooks = hooks or SlotHooks()
    queues = tuple(queues)
    process = workers.process_id(node=node)
    parallelism = Job.objects.filter(pk=job_id).values_list("parallelism", flat=True).first()
    if parallelism is None:
        return slot_registry.STALE
    began = slot_registry.slot_begin(job_id, token, node, process, parallelism=parallelism)
    if began != slot_registry.BEGUN:
        if began != slot_registry.STALE:
            logger.info("slot of job %s not run: %s", job_id, began)
        return began
    keepalive = _keepalive_here()
    keepalive.running(job_id, token, node, process)
    requeued = False
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
            )
            ended = run.run()
            if ended != "slice":
                return ended
            with keepalive.lock:
                keepalive.slot = None
            requeue = slot_registry.slot_requeue(
                job_id, token, dispatch.kind_queue(run.kind_name), node=node, process=process
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
    ) -> None:
        self.job_id = job_id
        # The slot's registry token (None: a run outside the registry, in tests).
        self.token = token
        # Set when the slot's registry entry is gone or another process's (a duplicate
        # message, or Redis lost its data): it claims no more and ends.
        self.disowned = False
        self.node = node
        self.hooks = hooks
        self.worker_kinds = worker_kinds
        self.queues = queues
        self.kind_name = ""
        self.limit_s = 0
        self.worker = (node or socket.gethostname())[:255]  # Chunk.worker: the node
        self.pid = os.getpid()
        self.claimer = Claimer(process=process, worker=self.worker, pid=self.pid)
        self.batch_size = 1
        self.chunk_seconds: float | None = None
        self.pace = SlotPace(job_id)
        # Read once per slot: the batch loop and the chunk loop ask for them.
        self.slice_s = settings.COREBOARD_SLOT_SLICE_MS / 1000
        self.flush_s = settings.COREBOARD_FLUSH_MS / 1000
        self.batch_target_s = settings.COREBOARD_BATCH_TARGET_MS / 1000
        # Once per process (a no-op after the first): stdout, stderr and logging go to the
        # running chunk's output.
        output.capture_install()
        self.keepalive = _keepalive_here()
        # The database failed to answer since this slot last asked it.
        self.database_lost = False

    def run(self) -> str:
        # An Exception that reaches here is the engine's (a kind's is an outcome): the
        # chunks go back without counting a lost run. Anything else (SystemExit from a
        # kind, a cold shutdown) counts it, as a lost process would: a chunk that keeps
        # ending its process this way is failed after COREBOARD_CHUNK_MAX_ATTEMPTS.
        try:
            ended = self._run()
        except BaseException as error:
            self._release_held(attempt_back=isinstance(error, Exception))
            raise
        self._release_held(attempt_back=True)
        return ended

    def _run(self) -> str:
        job = self._database(
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
        if job["status"] == Job.Status.PENDING:
            self._database(lambda: job_start_if_pending(job_id=self.job_id))
        slice_end = time.monotonic() + self.slice_s
        hard_end = time.monotonic() + settings.COREBOARD_SLOT_MAX_S
        claims = self._claim()
        while True:
            if claims is None:
                return "disowned" if self.disowned else "slice"
            if not claims:
                if self._wait_for_retry(slice_end):
                    claims = self._claim()
                    continue
                return "drained"
            if len(claims) == 1:
                # Batches of short chunks finish before anybody could see them running.
                events.chunks_claimed(self.job_id, [self._claimed_state(claims[0])])
            outcomes, active = self._run_batch(kind, claims)
            now = time.monotonic()
            yielding = now >= hard_end or (
                now >= slice_end and slot_registry.slot_should_yield(self.node, self.queues)
            )
            if now >= slice_end and not yielding:
                slice_end = now + self.slice_s
            self._adapt_batch()
            # A draining node finishes the chunks it has and claims no more: the claim
            # permit (one round trip a batch, about 100 ms of work) is refused once it
            # drains, so a drain takes effect at the next chunk boundary.
            with self._claiming(active and not yielding) as claiming:
                yielding = yielding or (active and not claiming)
                # The batch's outcomes and the next claim share one transaction.
                recorded = self._record_once(outcomes, self.batch_size if claiming else 0)
            if recorded is None:
                # The database went away as the batch was recorded: record it again once
                # it answers, then claim in a transaction (and under a permit) of its own.
                recorded = self._record(outcomes)
                if active and recorded.job_active and not yielding:
                    again = self._claim()
                    yielding = again is None
                    recorded.claims = again or []
            if not (active and recorded.job_active):
                return "over"
            if self.disowned:
                return "disowned"
            if yielding:
                return "slice"
            claims = recorded.claims

    def _record_once(self, outcomes: list[Outcome], claim: int) -> Recorded | None:
        """Record outcomes and claim `claim` more in one transaction; None if the database
        did not answer (whether that committed is unknown: recording again counts nothing
        twice, and a claim it may have made is released on reconnecting)."""
        try:
            recorded = chunks_record(
                job_id=self.job_id, outcomes=outcomes, claimer=self.claimer, claim=claim
            )
        except (OperationalError, InterfaceError) as error:
            self._database_lost(error)
            return None
        self._recorded(outcomes, recorded)
        return recorded

    def _record(self, outcomes: list[Outcome]) -> Recorded:
        """Record outcomes (no claim), trying again while the database does not answer."""
        recorded = self._database(
            lambda: chunks_record(job_id=self.job_id, outcomes=outcomes, claimer=self.claimer)
        )
        self._recorded(outcomes, recorded)
        return recorded

    def _recorded(self, outcomes: list[Outcome], recorded: Recorded) -> None:
        self.keepalive.let_go(outcome.chunk_id for outcome in outcomes)
        self.keepalive.hold(self.claimer.process, (claim.id for claim in recorded.claims))

    def _database(self, work: Callable[[], T]) -> T:
        """Run `work` (whole transactions), again while the database does not answer (a
        restart, a failover: the slot lives on rather than leave its chunks leased), for
        up to DATABASE_PATIENCE_S; then the last error is raised."""
        lost_at: float | None = None
        pause = 0.05
        while True:
            try:
                self._release_unknown()
                return work()
            except (OperationalError, InterfaceError) as error:
                if lost_at is None:
                    lost_at = time.monotonic()
                    self._database_lost(error)
                else:
                    connection.close()
                if time.monotonic() - lost_at > DATABASE_PATIENCE_S:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, DATABASE_RETRY_MAX_S)

    def _database_lost(self, error: Exception) -> None:
        connection.close()
        self.database_lost = True
        logger.warning(
            "slot of job %s: the database did not answer (%s); trying again", self.job_id, error
        )

    def _release_unknown(self) -> None:
        """After the database failed to answer: chunks leased to this process that its slot
        does not hold (claimed by a commit whose answer was lost) go back at once."""
        if self.database_lost:
            leases_release(
                process=self.claimer.process, keep=self.keepalive.held(), attempt_back=True
            )
            self.database_lost = False

    def _release_held(self, *, attempt_back: bool) -> None:
        """The slot ends: the chunks it still holds (an error or a stop ended it mid-batch)
        go back to pending now, or, if the database does not answer, their leases expire
        within COREBOARD_LEASE_MS, whatever this process runs next."""
        held = self.keepalive.held()
        self.keepalive.let_go(held)
        if not held and not self.database_lost:
            return
        try:
            leases_release(process=self.claimer.process, attempt_back=attempt_back)
        except DatabaseError as error:
            connection.close()
            logger.warning("slot of job %s could not hand back its chunks: %s", self.job_id, error)

    @contextmanager
    def _claiming(self, wanted: bool = True) -> Iterator[bool]:
        """Whether the claim `wanted` may be made (False while the node drains, or once
        the slot no longer owns its registry entry: then `disowned` is set); the permit is
        held for the block, which makes the claim. The ownership check shares the
        permit's round trip: no extra one per batch."""
        permitted = False
        if wanted and self.token is None:
            permitted = workers.claim_permit(self.node, self.claimer.process)
        elif wanted and self.token is not None:
            permit = slot_registry.slot_claim_permit(
                self.job_id, self.token, self.node, self.claimer.process
            )
            if not permit.owned:
                self.disowned = True
                logger.warning(
                    "slot of job %s stops: its registry entry is gone or another "
                    "process's (a duplicate message, or the broker lost its data)",
                    self.job_id,
                )
                if permit.permitted:
                    workers.claim_done(self.node, self.claimer.process)
            permitted = permit.owned and permit.permitted
        try:
            yield permitted
        finally:
            if permitted:
                workers.claim_done(self.node, self.claimer.process)

    def _claim(self) -> list[Claim] | None:
        """Claim the next batch; None when the node drains (no claim was made)."""
        with self._claiming() as claiming:
            if not claiming:
                return None
            claims = self._database(
                lambda: chunks_claim(
                    job_id=self.job_id, claimer=self.claimer, limit=self.batch_size
                )
            )
        self.keepalive.hold(self.claimer.process, (claim.id for claim in claims))
        return claims

    def _claimed_state(self, claim: Claim) -> ChunkDelta:
        return protocol.chunk_claimed_delta(
            index=claim.index,
            attempts=claim.attempts,
            worker=self.worker,
            pid=self.pid,
            at=timezone.now().isoformat(),
        )

    def _run_batch(self, kind: kinds.JobKind, claims: list[Claim]) -> tuple[list[Outcome], bool]:
        """Run claimed chunks, recording outcomes as they pile up (at most every
        COREBOARD_FLUSH_MS); the outcomes left to record, and False once the job is
        over (the rest of the batch is handed back as stopped)."""
        outcomes: list[Outcome] = []
        last_flush = time.monotonic()
        output_held = 0
        active = True
        for claim in claims:
            if not active:
                outcomes.append(Stopped(claim.id))
                continue
            outcome = self._run_one(kind, claim)
            outcomes.append(outcome)
            output_held += len(outcome.output.output)
            if isinstance(outcome, Stopped):
                active = False
            if time.monotonic() - last_flush >= self.flush_s or output_held >= OUTPUT_FLUSH_CHARS:
                recorded = self._record(outcomes)
                active = active and recorded.job_active
                outcomes = []
                output_held = 0
                last_flush = time.monotonic()
        return outcomes, active

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
        return Done(
            claim.id,
            result,
            usage.cpu_seconds,
            started_at,
            timezone.now(),
            result_json,
            usage,
            captured,
        )

    def _ended(self, meter: resources.ChunkMeter, began: float) -> tuple[resources.Usage, Captured]:
        stopper.chunk_end()
        usage = meter.stop()
        self._observe(time.perf_counter() - began)
        captured = output.chunk_output_end()
        return usage, captured

    def _observe(self, seconds: float) -> None:
        previous = self.chunk_seconds
        self.chunk_seconds = seconds if previous is None else 0.7 * previous + 0.3 * seconds

    def _adapt_batch(self) -> None:
        target = self.batch_target_s
        per_chunk = max(self.chunk_seconds or target, 1e-5)
        self.batch_size = max(1, min(MAX_BATCH, int(target / per_chunk)))

    def _wait_for_retry(self, slice_end: float) -> bool:
        """Nothing claimable now: wait for a chunk whose retry is due soon, if any."""
        due = self._database(
            lambda: (
                Chunk.objects.filter(
                    job_id=self.job_id, status=Chunk.Status.PENDING, retry_at__isnull=False
                )
                .order_by("retry_at")
                .values_list("retry_at", flat=True)
                .first()
            )
        )
        if due is None:
            return False
        wait = (due - timezone.now()).total_seconds()
        if wait > RETRY_WAIT_MAX_S or time.monotonic() + wait > slice_end + RETRY_WAIT_MAX_S:
            return False
        time.sleep(max(wait, 0.0) + 0.01)
        return True
