"""A slot's bookkeeping, off the chunks' path: claims, records, permits, cancel checks.

A slot's chunks run one after another in its process's main thread. Everything that
waits for PostgreSQL or Redis happens in the process's bookkeeping thread instead, while
the chunks compute, so a core never sits idle on a round trip:

- the next chunks are claimed shortly before the ones in hand run out (when the work
  left in hand, at the chunks' measured pace, is down to a few claim round trips), under
  the node's claim permit, with the slice's yield check; the permit's round trip also
  looks for a higher priority's slot waiting, and then the slot gives way at once;
- outcomes are recorded at most every COREBOARD_FLUSH_MS, in the claim's transaction when
  one is due, and at once when the main thread has nothing left to run (the job's end);
- the job's status is looked at every COREBOARD_CANCEL_POLL_MS while no record says it,
  and a cancel reaches the chunk as a flag its progress calls read (no round trip).

The main thread only hands over outcomes and takes claims, in memory. Claims are made no
sooner than needed, so a slot does not sit on chunks another process could run: a chunk
of 250 ms is claimed a few milliseconds before the one running ends, not a chunk ahead.
Accounting is as before (jobs.engine.chunks): at least once, counted exactly once; the
chunks in hand are leased and renewed (jobs.engine.slots._Keepalive) from their claim.

The thread is the process's, reused by every slot it runs, so it keeps one database
connection. A slot that runs inside a transaction (the thread could not see its data) is
refused.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from django.utils import timezone

from jobs.engine import slot_registry, workers
from jobs.engine.chunks import (
    Claim,
    Claimer,
    Done,
    Outcome,
    Recorded,
    Stopped,
    chunks_claim,
    chunks_record,
    job_status,
    leases_release,
)
from jobs.models import Chunk, Job


class Leases(Protocol):
    """The chunks whose leases the process renews (jobs.engine.slots._Keepalive)."""

    def hold(self, process: str, chunk_ids: Iterable[int]) -> None: ...
    def let_go(self, chunk_ids: Iterable[int]) -> None: ...
    def held(self) -> set[int]: ...


logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH = 1000
# Outcomes are recorded early once they hold this much chunk output, and a slot's main
# thread waits (rather than pile up more) while as much again waits behind a record: a
# process holds at most about two of these at once (chunks printing a megabyte each grew
# a worker's memory by 33 MB when four could wait).
OUTPUT_FLUSH_CHARS = 1024 * 1024
OUTPUT_BACKLOG_CHARS = OUTPUT_FLUSH_CHARS
# How long a slot with nothing claimable waits for a chunk whose retry is due.
RETRY_WAIT_MAX_S = 2.0
# A slot outlives a database that does not answer (a restart, a failover) for this long,
# trying again at most every DATABASE_RETRY_MAX_S, then ends (its chunks' leases expire,
# and the reconciler sends a new slot once the database answers).
DATABASE_PATIENCE_S = 120.0
DATABASE_RETRY_MAX_S = 0.5
# The next claim is made when the work in hand is down to this many claim round trips
# (as measured), and never later than this many seconds before it runs out.
CLAIM_LEAD_TRIPS = 3
CLAIM_LEAD_MIN_S = 0.005

# Why a slot's bookkeeping stopped supplying chunks (slots.slot_run acts on it).
OVER = "over"  # the job is no longer running (done, failed, cancelled)
DRAINED = "drained"  # nothing left to claim now
SLICE = "slice"  # the slot's time slice is over and others wait, or its node drains
DISOWNED = "disowned"  # the slot's registry entry is gone or another process's


class Refused(RuntimeError):
    """A slot asked to run inside a transaction: its bookkeeping thread could not see it."""


# How long a thread waiting for the GIL waits before the running one must hand it over
# (CPython's default: 5 ms). The bookkeeping thread needs the GIL after each of a claim's
# round trips while a pure-Python chunk holds it: at 5 ms a hand-over, a claim and record
# of ten round trips took 50 to 100 ms on a busy machine; at 0.5 ms, a few. Threads that do
# not ask for the GIL cost nothing either way.
SWITCH_INTERVAL_S = 0.0005

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
# The process's last measured claim round trip (seconds), carried from slot to slot.
_claim_trip_s = 0.005


def _thread() -> ThreadPoolExecutor:
    """This process's bookkeeping thread (a prefork child does not inherit its parent's)."""
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coreboard-bookkeeping")
        _executor_pid = os.getpid()
    return _executor


def thread_connection_close() -> None:
    """Close the bookkeeping thread's database connection, if it has one (a test's database
    is dropped afterwards; a worker keeps its connection)."""
    if _executor is not None and _executor_pid == os.getpid():
        _executor.submit(lambda: connection.close()).result()


@dataclass
class SlotPlan:
    """What a slot's bookkeeping needs to know about it."""

    job_id: int
    # The slot's registry token (None: a run outside the registry, in tests).
    token: str | None
    node: str
    claimer: Claimer
    # The Redis lists whose waiting messages end the slot's turn: at its slice end, those of
    # its priority and higher ones (`yield_lists`); at any batch boundary, those of a
    # higher one (`outranked_lists`); slot_registry.priority_lists of its worker's queues.
    yield_lists: tuple[str, ...]
    outranked_lists: tuple[str, ...]
    slice_s: float
    hard_end: float
    flush_s: float
    batch_target_s: float
    cancel_poll_s: float


class Bookkeeper:
    """One slot's claims and records, done in the process's bookkeeping thread."""

    def __init__(self, plan: SlotPlan, keepalive: Leases) -> None:
        self.plan = plan
        self.keepalive = keepalive
        self.cv = threading.Condition()
        # Claimed, not started yet; finished, not recorded yet.
        self.supply: deque[Claim] = deque()
        self.outbox: list[Outcome] = []
        self.outbox_chars = 0
        # When the oldest outcome not recorded yet came (monotonic).
        self.outbox_since = 0.0
        # An outcome waits that must be recorded at once (a failure).
        self.urgent = False
        # The running chunk's start (monotonic), and the chunks' pace (seconds, EWMA).
        self.running_since: float | None = None
        self.chunk_s: float | None = None
        # The main thread waits for a claim; it has finished (closing) or failed (abort).
        self.main_waiting = False
        self.closing = False
        self.aborting = False
        # Why no more chunks come (OVER, DRAINED, SLICE, DISOWNED); set once.
        self.ended: str | None = None
        # Set once the job is known not to run: the running chunk stops at its next
        # progress call, and the claims in hand are handed back unrun.
        self.over = threading.Event()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.slice_end = time.monotonic() + plan.slice_s
        self.last_look = time.monotonic()
        self.claim_trip_s = _claim_trip_s
        # The database failed to answer since this slot last asked it.
        self.database_lost = False
        # Per-batch figures (seconds), for the benchmark's breakdown (tests/benchmarks).
        self.figures = BatchFigures()

    # --- the main thread's side ----------------------------------------------------------------

    def start(self) -> None:
        if connection.in_atomic_block:
            raise Refused("a slot runs its bookkeeping on its own connection: not in a transaction")
        _thread().submit(self._pump)

    def take(self) -> Claim | None:
        """The next chunk to run; None when no more come (the reason is `close()`'s)."""
        with self.cv:
            while True:
                self._raise_error()
                if self.over.is_set():
                    # The job ended: the claims in hand go back unrun (stopped).
                    self.outbox.extend(Stopped(claim.id) for claim in self.supply)
                    self.supply.clear()
                    self.ended = OVER
                    return None
                if self.supply:
                    self.main_waiting = False
                    self.running_since = time.monotonic()
                    claim = self.supply.popleft()
                    if len(self.supply) * (self.chunk_s or 0) <= self._lead_s():
                        self.cv.notify_all()
                    return claim
                if self.ended is not None or self.finished.is_set():
                    return None
                if not self.main_waiting:
                    self.main_waiting = True
                    self.figures.waits += 1
                    self.cv.notify_all()
                began = time.perf_counter()
                self.cv.wait()
                self.figures.waited_s += time.perf_counter() - began

    def put(self, outcome: Outcome, seconds: float) -> None:
        """A chunk ended (`seconds`: how long it ran)."""
        with self.cv:
            self.running_since = None
            previous = self.chunk_s
            self.chunk_s = seconds if previous is None else 0.7 * previous + 0.3 * seconds
            if not self.outbox:
                self.outbox_since = time.monotonic()
            self.outbox.append(outcome)
            self.outbox_chars += len(outcome.output.output)
            self.figures.chunks += 1
            if isinstance(outcome, Stopped):
                self.over.set()
            elif not isinstance(outcome, Done):
                # A failure is recorded at once, as it happens: it may fail the job (and
                # stop its other chunks), and which chunk failed it is the one that did.
                self.urgent = True
            if self.outbox_chars >= OUTPUT_FLUSH_CHARS or not self.supply:
                self.cv.notify_all()
            while self.outbox_chars >= OUTPUT_BACKLOG_CHARS and not self.finished.is_set():
                self.cv.wait()

    def close(self) -> str:
        """The main thread has run every chunk it took: record the rest; why it ended."""
        with self.cv:
            self.closing = True
            self.cv.notify_all()
            while not self.finished.is_set():
                self.cv.wait()
            self._raise_error()
            return self.ended or DRAINED

    def abort(self) -> None:
        """The main thread failed: stop at once (the slot hands back what it holds)."""
        with self.cv:
            self.aborting = True
            self.cv.notify_all()
            while not self.finished.is_set():
                self.cv.wait()

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    # --- the bookkeeping thread ----------------------------------------------------------------

    def _pump(self) -> None:
        try:
            # As Django does around a request: a connection older than CONN_MAX_AGE, or
            # broken, is closed before this slot uses it.
            close_old_connections()
            self._pump_until_done()
        except BaseException as error:  # handed to the main thread, which raises it
            with self.cv:
                self.error = error
        finally:
            with self.cv:
                self.finished.set()
                self.cv.notify_all()

    def _pump_until_done(self) -> None:
        while True:
            with self.cv:
                due = self._due()
                while due is None:
                    self.cv.wait(timeout=self._wait_s())
                    due = self._due()
                if due == "done":
                    return
                outcomes, self.outbox, self.outbox_chars = self.outbox, [], 0
                self.urgent = False
                self.cv.notify_all()
            if due == "claim":
                self._claim_and_record(outcomes)
            elif due == "record":
                self._record_and_tell(outcomes)
            else:
                self._look()

    def _due(self) -> str | None:
        """What the thread should do now (called under the lock): "claim" (and record),
        "record", "look" (at the job's status), "done", or None (wait)."""
        if self.aborting:
            return "done"
        now = time.monotonic()
        if self.ended is None and self._claim_due(now):
            return "claim"
        if self.outbox and (
            self.closing
            or self.main_waiting
            or self.urgent
            or self.over.is_set()
            or now - self.outbox_since >= self.plan.flush_s
            or self.outbox_chars >= OUTPUT_FLUSH_CHARS
        ):
            return "record"
        if self.closing:
            return "done"
        if self.running_since is not None and now - self.last_look >= self.plan.cancel_poll_s:
            return "look"
        return None

    def _in_hand_s(self, now: float) -> float | None:
        """The work claimed and not done yet, in seconds at the chunks' pace (None: no
        pace yet)."""
        if self.chunk_s is None:
            return None
        running = 0.0
        if self.running_since is not None:
            running = max(0.0, self.chunk_s - (now - self.running_since))
        return len(self.supply) * self.chunk_s + running

    def _lead_s(self) -> float:
        return max(CLAIM_LEAD_MIN_S, CLAIM_LEAD_TRIPS * self.claim_trip_s)

    def _claim_due(self, now: float) -> bool:
        if self.main_waiting:
            return True
        in_hand = self._in_hand_s(now)
        return in_hand is not None and in_hand <= self._lead_s()

    def _wait_s(self) -> float:
        """How long the thread may sleep before something could be due (it is woken
        sooner by the main thread)."""
        now = time.monotonic()
        waits = [self.plan.cancel_poll_s]
        if self.outbox:
            waits.append(self.plan.flush_s - (now - self.outbox_since))
        in_hand = self._in_hand_s(now)
        if in_hand is not None and self.ended is None:
            waits.append(in_hand - self._lead_s())
        return max(0.0005, min(waits))

    def _batch_size(self) -> int:
        if self.chunk_s is None:
            return 1
        return max(1, min(MAX_BATCH, int(self.plan.batch_target_s / max(self.chunk_s, 1e-5))))

    def _claim_and_record(self, outcomes: list[Outcome]) -> None:
        """Claim the next chunks, recording `outcomes` in the same transaction; or, once
        the slot may claim no more, record them only and say why no more come."""
        now = time.monotonic()
        stop = now >= self.plan.hard_end
        if not stop and now >= self.slice_end:
            if slot_registry.slot_should_yield(self.plan.node, self.plan.yield_lists):
                stop = True
            else:
                self.slice_end = now + self.plan.slice_s
        claims: list[Claim] = []
        recorded: Recorded | None = None
        began = time.perf_counter()
        with self._claiming(not stop) as permit:
            if permit is None:
                recorded = self._record(outcomes) if outcomes else None
            else:
                limit, share = self._batch_size(), 2 * permit.slots
                if outcomes:
                    recorded = self._record_once(outcomes, limit, share)
                    if recorded is None:
                        # The database went away as the batch was recorded: record it
                        # again once it answers, then claim in a transaction of its own.
                        recorded = self._record(outcomes)
                        if recorded.job_active:
                            claims = self._claim(limit, share)
                    else:
                        claims = recorded.claims
                else:
                    claims = self._claim(limit, share)
                self._measured_trip(time.perf_counter() - began)
        self.figures.claims += 1
        self.figures.claim_s += time.perf_counter() - began
        ended: str | None = None
        if recorded is not None and not recorded.job_active:
            ended = OVER
        elif permit is None:
            # Its slice is over, a higher priority waits, or its node drains: it gives way.
            ended = DISOWNED if self.disowned else SLICE
        elif not claims and not self._wait_for_retry():
            ended = DRAINED
        with self.cv:
            self.supply.extend(claims)
            if claims:
                self.main_waiting = False  # (it has something to take now)
            if ended is not None:
                self.ended = ended
                if ended == OVER:
                    self.over.set()
            self.cv.notify_all()

    def _measured_trip(self, seconds: float) -> None:
        global _claim_trip_s
        self.claim_trip_s = _claim_trip_s = 0.7 * self.claim_trip_s + 0.3 * seconds

    def _claim(self, limit: int, share: int) -> list[Claim]:
        claims = self._database(
            lambda: chunks_claim(
                job_id=self.plan.job_id, claimer=self.plan.claimer, limit=limit, share=share
            )
        )
        self.keepalive.hold(self.plan.claimer.process, (claim.id for claim in claims))
        return claims

    disowned = False
    # How often a higher priority's waiting slot made this one give way.
    outranked = 0

    def _record_and_tell(self, outcomes: list[Outcome]) -> None:
        recorded = self._record(outcomes)
        if not recorded.job_active:
            with self.cv:
                # Whatever else stopped the claims: a job that is over needs no more slots.
                self.ended = OVER
                self.over.set()
                self.cv.notify_all()

    def _look(self) -> None:
        """No record has said for a while whether the job still runs: ask."""
        self.last_look = time.monotonic()
        try:
            status = job_status(job_id=self.plan.job_id)
        except DatabaseError:
            connection.close()
            return
        if status != Job.Status.RUNNING:
            with self.cv:
                self.over.set()
                self.cv.notify_all()

    def _record_once(self, outcomes: list[Outcome], claim: int, share: int) -> Recorded | None:
        """Record outcomes and claim `claim` more in one transaction; None if the database
        did not answer (whether that committed is unknown: recording again counts nothing
        twice, and a claim it may have made is released on reconnecting)."""
        began = time.perf_counter()
        try:
            recorded = chunks_record(
                job_id=self.plan.job_id,
                outcomes=outcomes,
                claimer=self.plan.claimer,
                claim=claim,
                share=share,
                announced=True,
            )
        except (OperationalError, InterfaceError) as error:
            self._database_lost(error)
            return None
        self._recorded(outcomes, recorded, began)
        return recorded

    def _record(self, outcomes: list[Outcome]) -> Recorded:
        """Record outcomes (no claim), trying again while the database does not answer."""
        began = time.perf_counter()
        recorded = self._database(
            lambda: chunks_record(
                job_id=self.plan.job_id,
                outcomes=outcomes,
                claimer=self.plan.claimer,
                announced=True,
            )
        )
        self._recorded(outcomes, recorded, began)
        return recorded

    def _recorded(self, outcomes: list[Outcome], recorded: Recorded, began: float) -> None:
        self.figures.records += 1
        self.figures.record_s += time.perf_counter() - began
        self.last_look = time.monotonic()
        self.keepalive.let_go(outcome.chunk_id for outcome in outcomes)
        self.keepalive.hold(self.plan.claimer.process, (claim.id for claim in recorded.claims))

    def database(self, work: Callable[[], T]) -> T:
        """`_database` for the main thread (before the slot's chunks run)."""
        return self._database(work)

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
            "slot of job %s: the database did not answer (%s); trying again",
            self.plan.job_id,
            error,
        )

    def _release_unknown(self) -> None:
        """After the database failed to answer: chunks leased to this process that its slot
        does not hold (claimed by a commit whose answer was lost) go back at once."""
        if self.database_lost:
            leases_release(
                process=self.plan.claimer.process, keep=self.keepalive.held(), attempt_back=True
            )
            self.database_lost = False

    def release_held(self, *, attempt_back: bool) -> None:
        """The slot ends (the thread has stopped): the chunks it still holds (an error or a
        stop ended it mid-batch) go back to pending now, or, if the database does not
        answer, their leases expire within COREBOARD_LEASE_MS, whatever this process runs
        next."""
        held = self.keepalive.held()
        self.keepalive.let_go(held)
        if not held and not self.database_lost:
            return
        try:
            leases_release(process=self.plan.claimer.process, attempt_back=attempt_back)
        except DatabaseError as error:
            connection.close()
            logger.warning(
                "slot of job %s could not hand back its chunks: %s", self.plan.job_id, error
            )

    @contextmanager
    def _claiming(self, wanted: bool) -> Iterator[slot_registry.ClaimPermit | None]:
        """The claim permit, if the claim `wanted` may be made (None while the node
        drains, or once the slot no longer owns its registry entry: then `disowned` is
        set); held for the block, which makes the claim. The ownership check shares the
        permit's round trip."""
        plan = self.plan
        permit: slot_registry.ClaimPermit | None = None
        if wanted and plan.token is None:
            if workers.claim_permit(plan.node, plan.claimer.process):
                permit = slot_registry.ClaimPermit(owned=True, permitted=True)
        elif wanted and plan.token is not None:
            asked = slot_registry.slot_claim_permit(
                plan.job_id,
                plan.token,
                plan.node,
                plan.claimer.process,
                above=plan.outranked_lists,
            )
            if not asked.owned:
                self.disowned = True
                logger.warning(
                    "slot of job %s stops: its registry entry is gone or another "
                    "process's (a duplicate message, or the broker lost its data)",
                    plan.job_id,
                )
                if asked.permitted:
                    workers.claim_done(plan.node, plan.claimer.process)
            elif asked.permitted and asked.outranked:
                self.outranked += 1
                workers.claim_done(plan.node, plan.claimer.process)
            elif asked.permitted:
                permit = asked
        try:
            yield permit
        finally:
            if permit is not None:
                workers.claim_done(plan.node, plan.claimer.process)

    def _wait_for_retry(self) -> bool:
        """Nothing claimable now: wait for a chunk whose retry is due soon, if any (True:
        waited, claim again)."""
        due = self._database(
            lambda: (
                Chunk.objects.filter(
                    job_id=self.plan.job_id, status=Chunk.Status.PENDING, retry_at__isnull=False
                )
                .order_by("retry_at")
                .values_list("retry_at", flat=True)
                .first()
            )
        )
        if due is None:
            return False
        wait = (due - timezone.now()).total_seconds()
        if wait > RETRY_WAIT_MAX_S or time.monotonic() + wait > self.slice_end + RETRY_WAIT_MAX_S:
            return False
        time.sleep(max(wait, 0.0) + 0.01)
        return True


@dataclass
class BatchFigures:
    """Where a slot's time went, summed over its batches (seconds).

    The main thread: `loop_s` from its first claim taken to its last chunk's end, of
    which `run_s` in the kind's code and `waited_s` waiting for a claim; the rest is the
    engine's own work around each chunk (capture, metering, live events). The
    bookkeeping thread, beside it: `claims` claims (with the records sharing their
    transaction) in `claim_s`, and `records` records in `record_s`.
    """

    chunks: int = 0
    run_s: float = 0.0
    loop_s: float = 0.0
    claims: int = 0
    claim_s: float = 0.0
    records: int = 0
    record_s: float = 0.0
    waits: int = 0
    waited_s: float = 0.0

    def add(self, other: BatchFigures) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self, **about: object) -> str:
        figures = {
            name: round(value, 6) if isinstance(value, float) else value
            for name, value in vars(self).items()
        }
        return json.dumps({**about, **figures})
