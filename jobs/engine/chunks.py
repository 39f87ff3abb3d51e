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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    chunks_cancel_unstarted,
    job_finish,
    job_lock,
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


@dataclass(frozen=True)
class Claim:
    """A chunk claimed by one process: what it needs to run it."""

    id: int
    index: int
    spec: Spec
    attempts: int
    failures: int

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


@dataclass
class Recorded:
    """What recording a batch found: whether the job still runs, and the next claims."""

    job_active: bool
    counted: int = 0
    claims: list[Claim] = field(default_factory=list)


def _lease_until() -> datetime:
    return timezone.now() + timedelta(milliseconds=settings.COREBOARD_LEASE_MS)


def job_start_if_pending(*, job_id: int) -> None:
    """The first claim of a job marks it running; its wall time starts here."""
    retry_on_lock_timeout(partial(_job_start_if_pending, job_id))


def _job_start_if_pending(job_id: int) -> None:
    with transaction.atomic():
        job = job_lock(job_id)
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
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE jobs_chunk c
SET status = 'running', attempts = c.attempts + 1, lease_owner = %(owner)s,
    lease_expires_at = %(lease_until)s, worker = %(worker)s, pid = %(pid)s,
    queued_at = statement_timestamp(), started_at = statement_timestamp(),
    finished_at = NULL, retry_at = NULL
FROM picked WHERE c.id = picked.id
RETURNING c.id, c.index, c.spec, c.attempts, c.failures
"""


def chunks_claim(*, job_id: int, claimer: Claimer, limit: int) -> list[Claim]:
    """Claim up to `limit` of the job's claimable pending chunks, lowest index first.

    Nothing is claimed for a job that is not running. Each claimed chunk is `running`,
    leased to the claimer for COREBOARD_LEASE_MS, its attempts counted.
    """
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        return _claim(job_id, claimer, limit)


def _claim(job_id: int, claimer: Claimer, limit: int) -> list[Claim]:
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "job_id": job_id,
                "owner": claimer.process,
                "worker": claimer.worker,
                "pid": claimer.pid,
                "limit": limit,
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
        )
        for row in rows
    ]
    claims.sort(key=lambda claim: claim.index)
    return claims


# A worker's claims and outcomes may be lost in a database crash without harm: the chunks
# stay leased, the leases expire, and the chunks run again (at least once). Not waiting for
# each commit's WAL flush saves milliseconds per batch.
def _commit_without_waiting_for_disk() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('synchronous_commit', 'off', true)")


_JOB_LOCK_SQL = """
SELECT *, set_config('synchronous_commit', 'off', true) AS no_disk_wait
FROM jobs_job WHERE id = %s FOR UPDATE
"""


def _job_lock_without_waiting_for_disk(job_id: int) -> Job | None:
    """job_lock, and the transaction's commit will not wait for the disk (one round trip)."""
    return next(iter(Job.objects.raw(_JOB_LOCK_SQL, [job_id])), None)


def chunks_record(
    *, job_id: int, outcomes: list[Outcome], claimer: Claimer | None = None, claim: int = 0
) -> Recorded:
    """Record a batch of outcomes of one job's chunks in one transaction, and claim the
    next `claim` chunks for `claimer` in the same one while the job runs.

    Done chunks count once each (only while still `running`); a chunk that raised goes
    back to pending with a backoff until its retries are used up, then fails the job;
    a stopped chunk is cancelled unless its job runs again (retried meanwhile).
    """
    return retry_on_lock_timeout(
        partial(_chunks_record, job_id=job_id, outcomes=outcomes, claimer=claimer, claim=claim)
    )


def _chunks_record(
    *, job_id: int, outcomes: list[Outcome], claimer: Claimer | None, claim: int
) -> Recorded:
    with transaction.atomic():
        job = _job_lock_without_waiting_for_disk(job_id)
        if job is None:
            return Recorded(job_active=False)
        recorded = Recorded(job_active=job.is_active)
        fields: set[str] = set()
        done = [outcome for outcome in outcomes if isinstance(outcome, Done)]
        changed = _chunks_done(done)
        if changed:
            counted = {chunk.pk for chunk in changed}
            job.done_chunks += len(changed)
            job.cpu_seconds += sum(o.cpu_seconds for o in done if o.chunk_id in counted)
            fields |= {"done_chunks", "cpu_seconds"}
            if _peak_raised(job, [chunk.peak_rss for chunk in changed]):
                fields.add("peak_rss")
            recorded.counted = len(changed)
            kind = kinds.get(job.kind)
            finishes = any(kind.finishes_job(o.result) for o in done if o.chunk_id in counted)
            if job.status == Job.Status.RUNNING and (
                finishes or job.done_chunks == job.total_chunks
            ):
                job_finish(job)
                fields |= {"status", "result", "result_file", "error", "finished_at"}
        others = {o.chunk_id: o for o in outcomes if not isinstance(o, Done)}
        if others:
            not_done = _chunks_not_done(job, others, fields)
            if _peak_raised(job, [chunk.peak_rss for chunk in not_done]):
                fields.add("peak_rss")
            changed += not_done
        if fields:
            job_save(job, sorted(fields))
        recorded.job_active = job.is_active
        if fields or changed:
            job_publish_after_commit(job, changed)
        if claim and claimer is not None and job.status == Job.Status.RUNNING:
            recorded.claims = _claim(job_id, claimer, claim)
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


def _chunks_done(done: list[Done]) -> list[Chunk]:
    """Mark finished chunks done in one statement, only those still running (the job is
    locked); the chunks that counted, as unsaved instances for the live state."""
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
        rows = cursor.fetchall()
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


def _chunks_not_done(job: Job, outcomes: Mapping[int, Outcome], fields: set[str]) -> list[Chunk]:
    """Chunks that raised or stopped (rare: the ORM is fine here); the job is locked."""
    chunks = list(
        Chunk.objects.select_for_update()
        .filter(pk__in=outcomes, status=Chunk.Status.RUNNING)
        .order_by("index")
    )
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


def leases_renew(*, process: str) -> int:
    """Extend the leases `process` holds; the number of chunks it holds."""
    return Chunk.objects.filter(status=Chunk.Status.RUNNING, lease_owner=process).update(
        lease_expires_at=_lease_until()
    )


def leases_release(*, process: str) -> list[int]:
    """Hand back every chunk `process` holds (it is known to be gone).

    Returns the ids of the jobs concerned.
    """
    return _leases_return(lease_owner=process)


def leases_reap() -> list[int]:
    """Return chunks whose lease expired to pending (cancelled, if their job has ended).

    Returns the ids of the jobs concerned.
    """
    return _leases_return(lease_expires_at__lt=timezone.now())


def _leases_return(**lease: Any) -> list[int]:
    with transaction.atomic():
        stale = list(
            Chunk.objects.select_for_update(skip_locked=True)
            .filter(status=Chunk.Status.RUNNING, **lease)
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
    failed and is retried); the ids of the jobs finished."""
    unfinished = Chunk.objects.filter(
        job_id=OuterRef("pk"),
        status__in=Chunk.UNFINISHED_STATUSES,
    )
    idle = Job.objects.filter(status=Job.Status.RUNNING).exclude(Exists(unfinished))
    finished = []
    for job_id in idle.values_list("pk", flat=True):
        with transaction.atomic():
            job = job_lock(job_id)
            if job is None or job.status != Job.Status.RUNNING or not _work_done(job):
                continue
            job_finish(job)
            job_save(job, ["status", "result", "result_file", "error", "finished_at"])
            job_publish_after_commit(job)
            finished.append(job_id)
    return finished


def _work_done(job: Job) -> bool:
    """Every chunk done, or one whose result ends the job early; nothing still to run."""
    chunks = job.chunks
    if chunks.filter(status__in=Chunk.UNFINISHED_STATUSES).exists():
        return False
    if job.total_chunks and job.done_chunks == job.total_chunks:
        return True
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
    "chunks_claim",
    "chunks_record",
    "job_start_if_pending",
    "job_status",
    "jobs_finish_idle",
    "leases_reap",
    "leases_release",
    "leases_renew",
]
