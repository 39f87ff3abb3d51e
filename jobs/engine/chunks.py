"""The worker's side of a chunk: claim it under a lease, record how it ended, reap leases.

Chunks run at least once and are accounted exactly once. A worker process claims a job's
next pending chunks in one statement (`FOR UPDATE SKIP LOCKED`, so concurrent claimers
never take the same chunk) and holds each under a lease that it renews while it lives. An
expired lease (its process or its whole machine gone) returns the chunk to pending, to be
claimed again. Outcomes are recorded in batches under the job's row lock, and only for
chunks still `running`: a chunk that finishes twice moves the job's counters once, and
only the batch that records the last chunk (or an early exit) runs `combine`.

Lock order everywhere: the job row first, then its chunk rows. Claims and the lease reaper
lock chunk rows only and never wait for a job lock while holding them.

A lease lives as long as its chunk runs, not as long as its process: the process renews
exactly the chunks its running slot holds (`leases_renew`), and a slot that ends hands
back what it still holds (`leases_release`), so an orphaned chunk returns within one lease
whatever else the process runs.

No worker holds a job's row lock while it is not answering: every worker transaction that
locks a job tells PostgreSQL (in its first statement) to end it once idle for
LOCK_HOLD_MAX_MS, so a frozen or partitioned worker stalls the job's other workers for
about that long, and `combine` (arbitrary code, seconds perhaps) runs outside any lock
(`job_complete`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from jobs import kinds
from jobs.engine.job_state import (
    JOB_FINISHED_FIELDS,
    chunks_cancel_unstarted,
    job_combine,
    job_combine_discard,
    job_ended,
    job_finished,
    job_publish_after_commit,
    job_save,
    retry_on_lock_timeout,
)
from jobs.engine.output import NOTHING, Captured
from jobs.engine.resources import Usage
from jobs.kinds.base import Spec
from jobs.models import Chunk, Job

RETRY_BACKOFF_BASE_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0
# How long a worker transaction that holds a job's row lock may sit idle between its
# statements (normally a few milliseconds of Python) before PostgreSQL ends it, releasing
# the lock: a worker frozen (SIGSTOP, swapping) or cut off mid-transaction stalls the job's
# other workers about this long, not COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS. Its own
# transaction is rolled back and its slot records again (jobs.engine.slots).
LOCK_HOLD_MAX_MS = 1000
# A worker transaction holding a job's lock names the job in application_name, so a page
# can say which job a silent lock holder stalls (jobs.selectors.jobs).
LOCK_HOLDER_PREFIX = "coreboard job "


@dataclass(frozen=True)
class Claim:
    """A chunk claimed by one process: what it needs to run it."""

    id: int
    index: int
    spec: Spec
    attempts: int
    failures: int
    claimed_at: datetime | None = None

    @property
    def runs_lost(self) -> int:
        """Earlier claims that ended neither done nor raised: their process was lost."""
        return self.attempts - 1 - self.failures


@dataclass(frozen=True)
class Done:
    chunk_id: int
    result: Any
    cpu_seconds: float
    started_at: datetime
    finished_at: datetime
    # The result as JSON text, when the runner already encoded it (to check it can be).
    result_json: str | None = None
    usage: Usage | None = None
    output: Captured = NOTHING


@dataclass(frozen=True)
class Raised:
    """The kind's `run` raised (`error` is the traceback), or the chunk may not run again
    (`final`: it is failed at once, with no retry)."""

    chunk_id: int
    error: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    final: bool = False
    usage: Usage | None = None
    output: Captured = NOTHING


@dataclass(frozen=True)
class Stopped:
    """The chunk gave up because its job is no longer running (cancel, early exit)."""

    chunk_id: int
    usage: Usage | None = None
    output: Captured = NOTHING


Outcome = Done | Raised | Stopped


@dataclass(frozen=True)
class Claimer:
    """Who claims: the process (a workers.process_id, stored as the chunk's lease_owner),
    and the host and pid shown on the chunk."""

    process: str
    worker: str
    pid: int
    # The code this process runs the job's kind with (Chunk.kind_source, coreboard_commit).
    kind_source: str = ""
    coreboard_commit: str = ""


@dataclass
class Recorded:
    """What recording a batch found: whether the job still runs, and the next claims."""

    job_active: bool
    counted: int = 0
    claims: list[Claim] = field(default_factory=list)
    # The batch finished the job's work: it is to be combined (outside the lock).
    complete: bool = False


def _lease_until() -> datetime:
    return timezone.now() + timedelta(milliseconds=settings.COREBOARD_LEASE_MS)


def job_start_if_pending(*, job_id: int) -> None:
    """The first claim of a job marks it running; its wall time starts here."""
    retry_on_lock_timeout(partial(_job_start_if_pending, job_id))


def _job_start_if_pending(job_id: int) -> None:
    with transaction.atomic():
        job = _job_lock_briefly(job_id)
        if job is None or job.status != Job.Status.PENDING:
            return
        job.status = Job.Status.RUNNING
        job.started_at = timezone.now()
        job_save(job, ["status", "started_at"])
        job_publish_after_commit(job)


_CLAIM_SQL = """
WITH picked AS (
    SELECT c.id FROM jobs_chunk c
    WHERE c.job_id = %(job_id)s AND c.status = 'pending'
      AND (c.retry_at IS NULL OR c.retry_at <= statement_timestamp())
      AND EXISTS (SELECT 1 FROM jobs_job j WHERE j.id = %(job_id)s AND j.status = 'running')
    ORDER BY c.index
    LIMIT least(%(limit)s, coalesce((
        SELECT greatest(1, ceil((j.total_chunks - j.done_chunks)::numeric / %(share)s))::int
        FROM jobs_job j WHERE j.id = %(job_id)s), 1))
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE jobs_chunk c
SET status = 'running', attempts = c.attempts + 1, lease_owner = %(owner)s,
    lease_expires_at = %(lease_until)s, worker = %(worker)s, pid = %(pid)s,
    kind_source = %(kind_source)s, coreboard_commit = %(coreboard_commit)s,
    queued_at = statement_timestamp(), started_at = statement_timestamp(),
    finished_at = NULL, retry_at = NULL
FROM picked WHERE c.id = picked.id
RETURNING c.id, c.index, c.spec, c.attempts, c.failures, c.queued_at
"""


def chunks_claim(*, job_id: int, claimer: Claimer, limit: int, share: int = 1) -> list[Claim]:
    """Claim up to `limit` of the job's claimable pending chunks, lowest index first, and
    at most 1/`share` of its unfinished ones: with `share` twice the job's slots, claims
    shrink as the job nears its end (guided self-scheduling), so no slot takes the last
    chunks while the others have none left to run.

    Nothing is claimed for a job that is not running. Each claimed chunk is `running`,
    leased to the claimer for COREBOARD_LEASE_MS, its attempts counted.
    """
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        return _claim(job_id, claimer, limit, share)


def _claim(job_id: int, claimer: Claimer, limit: int, share: int = 1) -> list[Claim]:
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "job_id": job_id,
                "owner": claimer.process,
                "worker": claimer.worker,
                "pid": claimer.pid,
                "kind_source": claimer.kind_source,
                "coreboard_commit": claimer.coreboard_commit,
                "limit": limit,
                "share": max(1, share),
                "lease_until": _lease_until(),
            },
        )
        rows = cursor.fetchall()
    claims = [
        Claim(
            id=row[0],
            index=row[1],
            spec=json.loads(row[2]) if isinstance(row[2], str) else row[2],
            attempts=row[3],
            failures=row[4],
            claimed_at=row[5],
        )
        for row in rows
    ]
    claims.sort(key=lambda claim: claim.index)
    return claims


# A worker's claims and outcomes may be lost in a database crash without harm: the chunks
# stay leased, the leases expire, and the chunks run again (at least once). Not waiting for
# each commit's WAL flush saves milliseconds per batch.
def _commit_without_waiting_for_disk() -> None:
    """Also, as a job's lock does (_job_lock_briefly): a claimer frozen mid-claim holds
    the chunks' row locks at most LOCK_HOLD_MAX_MS. Inside an outer transaction (a
    test's) that bound would outlive this one: unchanged."""
    own = len(connection.atomic_blocks) == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('synchronous_commit', 'off', true), "
            "set_config('idle_in_transaction_session_timeout', "
            "coalesce(%s, current_setting('idle_in_transaction_session_timeout')), true)",
            [str(LOCK_HOLD_MAX_MS) if own else None],
        )


_JOB_LOCK_SQL = """
SELECT *, set_config('synchronous_commit', 'off', true) AS no_disk_wait,
       set_config('idle_in_transaction_session_timeout',
                  coalesce(%s, current_setting('idle_in_transaction_session_timeout')), true)
           AS hold_max,
       set_config('application_name',
                  coalesce(%s, current_setting('application_name')), true) AS holder
FROM jobs_job WHERE id = %s FOR UPDATE
"""


def _job_lock_briefly(job_id: int) -> Job | None:
    """job_lock for a worker: PostgreSQL ends the transaction once it sits idle for
    LOCK_HOLD_MAX_MS (its worker frozen or cut off), its commit does not wait for the disk,
    and it names the job it locks; all in the locking statement (one round trip).

    Inside an outer transaction (a test's) the settings would outlive this one: unchanged.
    """
    own = len(connection.atomic_blocks) == 1
    params = [
        str(LOCK_HOLD_MAX_MS) if own else None,
        f"{LOCK_HOLDER_PREFIX}{job_id}" if own else None,
        job_id,
    ]
    return next(iter(Job.objects.raw(_JOB_LOCK_SQL, params)), None)


def chunks_record(
    *,
    job_id: int,
    outcomes: list[Outcome],
    claimer: Claimer | None = None,
    claim: int = 0,
    share: int = 1,
    announced: bool = False,
) -> Recorded:
    """Record a batch of outcomes of one job's chunks in one transaction, and claim the
    next `claim` chunks (`share`: as chunks_claim) for `claimer` in the same one while the
    job runs. `announced`: live pages were told of the done chunks as they finished, so
    the commit publishes the job's state and the other chunks only.

    Done chunks count once each (only while still `running`); a chunk that raised goes
    back to pending with a backoff until its retries are used up, then fails the job;
    a stopped chunk is cancelled unless its job runs again (retried meanwhile). A batch
    that finishes the job's work then combines it (`job_complete`, after the commit).

    Recording the same outcomes again (after an error that left unknown whether the first
    try committed) counts nothing twice.
    """
    recorded = retry_on_lock_timeout(
        partial(
            _chunks_record,
            job_id=job_id,
            outcomes=outcomes,
            claimer=claimer,
            claim=claim,
            share=share,
            announced=announced,
        )
    )
    if recorded.complete:
        job_complete(job_id=job_id)
        recorded.job_active = job_status(job_id=job_id) in Job.ACTIVE_STATUSES
    return recorded


def _chunks_record(
    *,
    job_id: int,
    outcomes: list[Outcome],
    claimer: Claimer | None,
    claim: int,
    share: int,
    announced: bool,
) -> Recorded:
    with transaction.atomic():
        job = _job_lock_briefly(job_id)
        if job is None:
            return Recorded(job_active=False)
        recorded = Recorded(job_active=job.is_active)
        fields: set[str] = set()
        done = [outcome for outcome in outcomes if isinstance(outcome, Done)]
        rows = _chunks_done(done)
        # Live pages were told of announced chunks as they ended: no instances needed.
        changed = [] if announced else _done_chunks(rows, done)
        if rows:
            counted = {row[0] for row in rows}
            job.done_chunks += len(rows)
            job.cpu_seconds += sum(o.cpu_seconds for o in done if o.chunk_id in counted)
            fields |= {"done_chunks", "cpu_seconds"}
            if _peak_raised(job, [row[_PEAK_RSS] for row in rows]):
                fields.add("peak_rss")
            recorded.counted = len(rows)
            kind = kinds.get(job.kind)
            finishes = any(kind.finishes_job(o.result) for o in done if o.chunk_id in counted)
            if job.status == Job.Status.RUNNING and (
                finishes or job.done_chunks == job.total_chunks
            ):
                # Combined after the commit, without the lock; nobody claims meanwhile.
                chunks_cancel_unstarted(job)
                recorded.complete = True
        others = {o.chunk_id: o for o in outcomes if not isinstance(o, Done)}
        if others:
            owner = claimer.process if claimer is not None else None
            not_done = _chunks_not_done(job, others, fields, owner=owner)
            if _peak_raised(job, [chunk.peak_rss for chunk in not_done]):
                fields.add("peak_rss")
            changed += not_done
        if fields:
            job_save(job, sorted(fields))
        recorded.job_active = job.is_active
        if fields or changed or rows:
            # Chunks told done as they ended: pages learn they are stored (fetchable).
            stored = [row[_INDEX] for row in rows] if announced else None
            job_publish_after_commit(job, changed, recorded=stored)
        if (
            claim
            and claimer is not None
            and job.status == Job.Status.RUNNING
            and not recorded.complete
        ):
            recorded.claims = _claim(job_id, claimer, claim, share)
    return recorded


def _peak_raised(job: Job, peaks: list[int | None]) -> bool:
    """Job.peak_rss is the largest of its chunks' (history sorts by it)."""
    known = [peak for peak in peaks if peak is not None]
    if not known or (job.peak_rss is not None and job.peak_rss >= max(known)):
        return False
    job.peak_rss = max(known)
    return True


_DONE_SQL = """
UPDATE jobs_chunk c
SET status = 'done', result = v.result, cpu_seconds = v.cpu, started_at = v.started,
    finished_at = v.finished, error = '', lease_owner = '', lease_expires_at = NULL,
    cpu_user_s = v.cpu_user, cpu_system_s = v.cpu_system, start_rss = v.start_rss,
    peak_rss = v.peak_rss, output = v.output, output_cut_bytes = v.output_cut
FROM unnest(%(ids)s::bigint[], %(results)s::jsonb[], %(cpu)s::float8[],
            %(started)s::timestamptz[], %(finished)s::timestamptz[],
            %(cpu_user)s::float8[], %(cpu_system)s::float8[], %(start_rss)s::bigint[],
            %(peak_rss)s::bigint[], %(output)s::text[], %(output_cut)s::bigint[])
     AS v(id, result, cpu, started, finished, cpu_user, cpu_system, start_rss, peak_rss,
          output, output_cut)
WHERE c.id = v.id AND c.status = 'running'
RETURNING c.id, c.index, c.attempts, c.worker, c.pid, c.queued_at, c.started_at,
          c.finished_at, c.cpu_seconds, c.cpu_user_s, c.cpu_system_s, c.start_rss,
          c.peak_rss
"""


def _chunks_done(done: list[Done]) -> list[tuple[Any, ...]]:
    """Mark finished chunks done in one statement, only those still running (the job is
    locked); the rows that counted (_DONE_SQL's RETURNING)."""
    if not done:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _DONE_SQL,
            {
                "ids": [o.chunk_id for o in done],
                "results": [o.result_json or json.dumps(o.result) for o in done],
                "cpu": [o.cpu_seconds for o in done],
                "started": [o.started_at for o in done],
                "finished": [o.finished_at for o in done],
                "cpu_user": [o.usage.cpu_user_s if o.usage else None for o in done],
                "cpu_system": [o.usage.cpu_system_s if o.usage else None for o in done],
                "start_rss": [o.usage.start_rss if o.usage else None for o in done],
                "peak_rss": [o.usage.peak_rss if o.usage else None for o in done],
                "output": [o.output.output for o in done],
                "output_cut": [o.output.cut_bytes for o in done],
            },
        )
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    return rows


# Where _DONE_SQL's RETURNING puts a chunk's index and its peak memory.
_INDEX = 1
_PEAK_RSS = 12


def _done_chunks(rows: list[tuple[Any, ...]], done: list[Done]) -> list[Chunk]:
    """The chunks _DONE_SQL counted, as unsaved instances for the live state."""
    written = {o.chunk_id: o.output.total_bytes for o in done}
    return [_done_chunk(row, written[row[0]]) for row in rows]


def _done_chunk(row: tuple[Any, ...], output_bytes: int) -> Chunk:
    """A chunk _DONE_SQL marked done, as an unsaved instance for its live state."""
    chunk = Chunk(
        id=row[0],
        index=row[1],
        status=Chunk.Status.DONE,
        attempts=row[2],
        worker=row[3],
        pid=row[4],
        queued_at=row[5],
        started_at=row[6],
        finished_at=row[7],
        cpu_seconds=row[8],
        cpu_user_s=row[9],
        cpu_system_s=row[10],
        start_rss=row[11],
        peak_rss=row[12],
    )
    chunk.output_bytes = output_bytes  # type: ignore[attr-defined]
    return chunk


def _chunks_not_done(
    job: Job, outcomes: Mapping[int, Outcome], fields: set[str], *, owner: str | None = None
) -> list[Chunk]:
    """Chunks that raised or stopped (rare: the ORM is fine here); the job is locked.

    With `owner`, only chunks still leased to it: one recorded before (a commit whose
    answer was lost) and claimed by another process since is not touched again.
    """
    running = Chunk.objects.select_for_update().filter(pk__in=outcomes, status=Chunk.Status.RUNNING)
    if owner is not None:
        running = running.filter(lease_owner=owner)
    chunks = list(running.order_by("index"))
    for chunk in chunks:
        outcome = outcomes[chunk.pk]
        _chunk_measured(chunk, outcome)
        if isinstance(outcome, Raised) and job.status == Job.Status.RUNNING:
            if _chunk_raised(chunk, outcome):
                job.failed_chunks += 1
                job.status = Job.Status.FAILED
                job.error = (
                    f"Chunk {chunk.index} failed after {chunk.attempts} attempt(s):\n"
                    f"{outcome.error}"
                )
                job.finished_at = timezone.now()
                fields |= {"failed_chunks", "status", "error", "finished_at"}
                chunks_cancel_unstarted(job)
                job_ended(job)
        elif job.status != Job.Status.RUNNING:
            chunk.status = Chunk.Status.CANCELLED
            chunk.finished_at = timezone.now()
            chunk.lease_owner = ""
            chunk.lease_expires_at = None
            if isinstance(outcome, Raised):
                chunk.error = outcome.error
        else:
            # The job runs again (a retry came in between): hand the chunk back.
            _chunk_release(chunk)
    Chunk.objects.bulk_update(chunks, _CHUNK_OUTCOME_FIELDS)
    return chunks


def _chunk_measured(chunk: Chunk, outcome: Raised | Stopped | Done) -> None:
    """What a chunk that did not finish printed and cost is kept too: what it printed
    before failing is what people need most."""
    if outcome.usage is not None:
        chunk.cpu_user_s = outcome.usage.cpu_user_s
        chunk.cpu_system_s = outcome.usage.cpu_system_s
        chunk.start_rss = outcome.usage.start_rss
        chunk.peak_rss = outcome.usage.peak_rss
    if outcome.usage is not None or outcome.output.total_bytes:
        chunk.output = outcome.output.output
        chunk.output_cut_bytes = outcome.output.cut_bytes
        chunk.output_bytes = outcome.output.total_bytes  # type: ignore[attr-defined]


_CHUNK_OUTCOME_FIELDS = [
    "cpu_user_s",
    "cpu_system_s",
    "start_rss",
    "peak_rss",
    "output",
    "output_cut_bytes",
    "status",
    "result",
    "cpu_seconds",
    "started_at",
    "finished_at",
    "error",
    "failures",
    "retry_at",
    "lease_owner",
    "lease_expires_at",
]


def _chunk_raised(chunk: Chunk, outcome: Raised) -> bool:
    """Back to pending after a backoff, or failed for good; True when it failed."""
    if outcome.started_at is not None:
        chunk.started_at = outcome.started_at
    chunk.finished_at = outcome.finished_at or timezone.now()
    chunk.error = outcome.error
    chunk.lease_owner = ""
    chunk.lease_expires_at = None
    if not outcome.final:
        chunk.failures += 1
    if outcome.final or chunk.failures > settings.COREBOARD_CHUNK_MAX_RETRIES:
        chunk.status = Chunk.Status.FAILED
        return True
    chunk.status = Chunk.Status.PENDING
    backoff = min(RETRY_BACKOFF_BASE_S * 2 ** (chunk.failures - 1), RETRY_BACKOFF_MAX_S)
    chunk.retry_at = timezone.now() + timedelta(seconds=backoff)
    return False


def _chunk_release(chunk: Chunk) -> None:
    chunk.status = Chunk.Status.PENDING
    chunk.lease_owner = ""
    chunk.lease_expires_at = None


def chunk_stop(
    *,
    job_id: int,
    chunk_id: int,
    process: str,
    error: str | None = None,
    output: Captured = NOTHING,
) -> bool:
    """Record how a chunk ends whose process is about to be stopped (jobs.engine.stopper):
    `cancelled`, its job being over, or failed for good with `error` (its time limit; no
    retry: it would run past it again). True when recorded; nothing is recorded unless
    the chunk still runs under `process`'s lease (and, for a cancel, its job has ended).

    The process's other chunks (claimed in the same batch, not run or not recorded yet)
    go back to pending without counting a lost run (their attempt is given back), or are
    cancelled with an ended job: the process is stopped for another chunk's sake.
    """
    return retry_on_lock_timeout(
        partial(
            _chunk_stop,
            job_id=job_id,
            chunk_id=chunk_id,
            process=process,
            error=error,
            output=output,
        )
    )


def _chunk_stop(
    *, job_id: int, chunk_id: int, process: str, error: str | None, output: Captured
) -> bool:
    with transaction.atomic():
        job = _job_lock_briefly(job_id)
        if job is None or (error is None and job.status == Job.Status.RUNNING):
            return False
        running = Chunk.objects.select_for_update().filter(
            job_id=job_id, status=Chunk.Status.RUNNING, lease_owner=process
        )
        if not running.filter(pk=chunk_id).exists():
            return False
        fields: set[str] = set()
        outcome: Outcome = (
            Stopped(chunk_id, output=output)
            if error is None
            else Raised(chunk_id, error, finished_at=timezone.now(), final=True, output=output)
        )
        changed = _chunks_not_done(job, {chunk_id: outcome}, fields)
        others = list(running.exclude(pk=chunk_id).order_by("index"))
        for chunk in others:
            chunk.attempts = max(chunk.attempts - 1, 0)
            if job.status == Job.Status.RUNNING:
                _chunk_release(chunk)
            else:
                chunk.status = Chunk.Status.CANCELLED
                chunk.finished_at = timezone.now()
                chunk.lease_owner = ""
                chunk.lease_expires_at = None
        Chunk.objects.bulk_update(others, [*_CHUNK_OUTCOME_FIELDS, "attempts"])
        if fields:
            job_save(job, sorted(fields))
        job_publish_after_commit(job, changed + others)
    return True


def leases_renew(*, process: str, chunk_ids: Collection[int]) -> int:
    """Extend the leases of `chunk_ids` that `process` still holds (its running slot's
    chunks, and no others: a chunk its slot left behind is not kept alive); how many."""
    if not chunk_ids:
        return 0
    return Chunk.objects.filter(
        pk__in=list(chunk_ids), status=Chunk.Status.RUNNING, lease_owner=process
    ).update(lease_expires_at=_lease_until())


_RELEASE_SQL = """
UPDATE jobs_chunk c
SET status = CASE WHEN j.status = 'running' THEN 'pending' ELSE 'cancelled' END,
    finished_at = CASE WHEN j.status = 'running' THEN c.finished_at
                       ELSE statement_timestamp() END,
    attempts = greatest(c.attempts - %(back)s, 0), lease_owner = '', lease_expires_at = NULL
FROM jobs_job j
WHERE j.id = c.job_id AND c.status = 'running' AND c.lease_owner = %(process)s
  AND NOT c.id = ANY(%(keep)s::bigint[])
RETURNING c.job_id
"""


def leases_release(
    *, process: str, keep: Collection[int] = (), attempt_back: bool = False
) -> list[int]:
    """Hand back the chunks `process` holds, but those in `keep`: to pending (cancelled if
    their job has ended). One statement that locks no job row.

    The reconciler calls it for a process known to be gone (its attempts count as lost
    runs); a slot as it ends (keep nothing) and after a database error (keep what it
    holds: a claim whose commit it never heard of is released, not left to expire), with
    `attempt_back`: no process was lost. Returns the ids of the jobs concerned.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _RELEASE_SQL, {"process": process, "keep": list(keep), "back": int(attempt_back)}
        )
        return sorted({row[0] for row in cursor.fetchall()})


def leases_reap() -> list[int]:
    """Return chunks whose lease expired to pending (cancelled, if their job has ended).

    Returns the ids of the jobs concerned.
    """
    with transaction.atomic():
        stale = list(
            Chunk.objects.select_for_update(skip_locked=True)
            .filter(status=Chunk.Status.RUNNING, lease_expires_at__lt=timezone.now())
            .values_list("id", "job_id")
        )
        if not stale:
            return []
        ids = [chunk_id for chunk_id, _ in stale]
        job_ids = sorted({job_id for _, job_id in stale})
        active = set(
            Job.objects.filter(pk__in=job_ids, status=Job.Status.RUNNING).values_list(
                "pk", flat=True
            )
        )
        Chunk.objects.filter(pk__in=ids, job_id__in=active).update(
            status=Chunk.Status.PENDING, lease_owner="", lease_expires_at=None
        )
        Chunk.objects.filter(pk__in=ids).exclude(job_id__in=active).update(
            status=Chunk.Status.CANCELLED,
            lease_owner="",
            lease_expires_at=None,
            finished_at=timezone.now(),
        )
    return job_ids


def jobs_finish_idle() -> list[int]:
    """Finish running jobs whose work is all done but that were not finished (their combine
    failed and is retried, or the worker that recorded their last chunk was lost before
    combining); the ids of the jobs finished."""
    unfinished = Chunk.objects.filter(
        job_id=OuterRef("pk"),
        status__in=Chunk.UNFINISHED_STATUSES,
    )
    # Only kinds this process has: another worker's combine of a kind it lacks would fail
    # the job ("unknown kind"), where the slot that recorded its last chunk, or a worker
    # with the kind, combines it.
    known = [kind.name for kind in kinds.all_kinds()]
    idle = Job.objects.filter(status=Job.Status.RUNNING, kind__in=known).exclude(Exists(unfinished))
    return [job_id for job_id in idle.values_list("pk", flat=True) if job_complete(job_id=job_id)]


def job_complete(*, job_id: int) -> bool:
    """Finish a running job whose work is done (every chunk, or one whose result ends the
    job early): `combine` runs without any lock (it may take seconds), then one short
    locked transaction stores its result, unless the job changed meanwhile (cancelled,
    or another chunk counted: then it is combined again). True when this call finished it.
    """
    while True:
        job = Job.objects.filter(pk=job_id).first()
        if job is None or job.status != Job.Status.RUNNING or not _work_done(job):
            return False
        job_combine(job)
        stored = retry_on_lock_timeout(partial(_job_complete_store, job))
        if stored is not None:
            return stored


def _job_complete_store(combined: Job) -> bool | None:
    """Store a combined result if the job is as it was combined; None: combine again."""
    with transaction.atomic():
        job = _job_lock_briefly(combined.pk)
        if (
            job is None
            or job.status != Job.Status.RUNNING
            or job.done_chunks != combined.done_chunks
        ):
            job_combine_discard(combined)
            return None if job is not None and job.status == Job.Status.RUNNING else False
        job.result, job.result_file = combined.result, combined.result_file
        job.status, job.error = combined.status, combined.error
        job_finished(job)
        job_save(job, ["status", "result", "result_file", "error", *JOB_FINISHED_FIELDS])
        job_publish_after_commit(job)
    return True


def _work_done(job: Job) -> bool:
    """Every chunk done, or one whose result ends the job early (then the chunks still
    running are stopped when they report)."""
    if job.total_chunks and job.done_chunks == job.total_chunks:
        return True
    chunks = job.chunks
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return False
    done = chunks.filter(status=Chunk.Status.DONE).values_list("result", flat=True)
    return any(kind.finishes_job(result) for result in done.iterator())


def job_status(*, job_id: int) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


__all__ = [
    "Captured",
    "Claim",
    "Claimer",
    "Done",
    "Outcome",
    "Raised",
    "Recorded",
    "Stopped",
    "chunk_stop",
    "chunks_claim",
    "chunks_record",
    "job_complete",
    "job_start_if_pending",
    "job_status",
    "jobs_finish_idle",
    "leases_reap",
    "leases_release",
    "leases_renew",
]
