"""Per-person caps: active jobs, chunks waiting or running, estimated CPU seconds, uploads.

Reads only. Jobs are admitted through jobs.services.admission, which calls `quota_errors`
under the person's lock; a preview calls it without one, to say the same thing early.
Each message names the limit and the variable that sets it (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from jobs import kinds
from jobs.kinds.base import Params
from jobs.models import Chunk, Job, Upload, UploadReservation

# A reservation older than this was left by a crash mid-write: it no longer counts.
UPLOAD_RESERVATION_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class Cost:
    """What admitting some work adds to a person's active work."""

    # Jobs it makes active: 1 for a new job and for a retried one.
    jobs: int
    # Chunks it makes pending.
    chunks: int
    # Estimated CPU seconds of those chunks.
    cpu_seconds: float
    # Whether the kind estimated them (else: chunks × their time limit, an upper bound).
    estimated: bool = True
    # The chunk time limit the bound was counted with (when not estimated).
    time_limit_s: int | None = None
    # Of several jobs admitted as one (`total`): the largest estimate of one of them, which
    # COREBOARD_QUOTA_JOB_S caps (None: this cost is one job's).
    largest_job_cpu_seconds: float | None = None

    def share(self, chunks: int, total: int) -> Cost:
        """The cost of `chunks` of a job of `total` chunks (chunks are taken as equal)."""
        seconds = self.cpu_seconds * chunks / total if total else 0.0
        return Cost(1, chunks, seconds, self.estimated, self.time_limit_s)

    @classmethod
    def total(cls, costs: list[Cost]) -> Cost:
        """The cost of several jobs admitted as one unit (a sweep): their jobs, chunks and
        CPU seconds summed; estimated only if every one was (else its bound counts)."""
        bounded = [cost for cost in costs if not cost.estimated]
        return cls(
            jobs=sum(cost.jobs for cost in costs),
            chunks=sum(cost.chunks for cost in costs),
            cpu_seconds=sum(cost.cpu_seconds for cost in costs),
            estimated=not bounded,
            time_limit_s=bounded[0].time_limit_s if bounded else None,
            largest_job_cpu_seconds=max(
                (cost.cpu_seconds for cost in costs if cost.estimated), default=0.0
            ),
        )

    @property
    def subject(self) -> str:
        """What the quota messages call this work."""
        return "This job" if self.jobs <= 1 else f"This sweep of {self.jobs} jobs"


def job_cost(*, kind: kinds.JobKind, params: Params, chunks: int, time_limit_s: int) -> Cost:
    """The cost of a new job of `kind`: its kind's estimate from `params` (what `split`
    gets, uploads resolved), at most `chunks` × `time_limit_s` (a chunk that runs longer
    is stopped); that bound when the kind cannot estimate (`estimate_seconds` is None)."""
    bound = float(chunks * time_limit_s)
    estimate = kind.estimate_seconds(params)
    if estimate is None:
        return Cost(1, chunks, bound, estimated=False, time_limit_s=time_limit_s)
    return Cost(1, chunks, min(max(float(estimate), 0.0), bound))


@dataclass(frozen=True)
class ActiveWork:
    """A person's active jobs, unfinished chunks and the estimated CPU seconds still ahead."""

    jobs: int
    chunks: int
    cpu_seconds: float


def active_work(owner: Any) -> ActiveWork:
    """What `owner`'s active (pending or running) jobs still ask for: each job's admitted
    estimate (`Job.estimated_cpu_seconds`) times the share of its chunks not done."""
    rows = (
        Job.objects.filter(owner=owner, status__in=Job.ACTIVE_STATUSES)
        .annotate(
            unfinished=Count("chunks", filter=Q(chunks__status__in=Chunk.UNFINISHED_STATUSES))
        )
        .values_list("total_chunks", "estimated_cpu_seconds", "unfinished")
    )
    jobs = chunks = 0
    seconds = 0.0
    for total, estimate, unfinished in rows:
        jobs += 1
        chunks += unfinished
        if estimate and total:
            seconds += estimate * unfinished / total
    return ActiveWork(jobs, chunks, seconds)


def cost_preview(*, owner: Any, cost: Cost) -> dict[str, Any]:
    """A job's estimate beside the quotas it is checked against, as the new-job page shows
    it before the job is sent (the preview's answer, with its `chunks`)."""
    return {
        "cpu_seconds": cost.cpu_seconds,
        "cpu_seconds_estimated": cost.estimated,
        "quota_job_cpu_seconds": settings.COREBOARD_QUOTA_JOB_S,
        "quota_cpu_seconds": settings.COREBOARD_QUOTA_CHUNK_S,
        "active_cpu_seconds": active_work(owner).cpu_seconds,
    }


def cost_words(cost: Cost) -> str:
    """How the cost was counted, for a message: `about 8,213 CPU seconds (2.3 CPU-hours)`."""
    words = f"about {cost.cpu_seconds:,.0f} CPU seconds"
    if cost.cpu_seconds >= 3600:
        words += f" ({cost.cpu_seconds / 3600:,.1f} CPU-hours)"
    if not cost.estimated:
        words += (
            f" (its kind gives no estimate, so {cost.chunks:,} chunks × their "
            f"{cost.time_limit_s:,} s time limit; a lower chunk time limit lowers it)"
        )
    return words


def quota_errors(*, owner: Any, cost: Cost) -> list[str]:
    """Why `owner` may not have work of `cost` more now (empty if they may).

    Counted across the person's active (pending or running) jobs, so finishing or
    cancelling a job frees its share.
    """
    active = active_work(owner)
    errors: list[str] = []
    active_limit = settings.COREBOARD_QUOTA_ACTIVE_JOBS
    if cost.jobs and active.jobs + cost.jobs > active_limit:
        errors.append(
            f"You have {active.jobs} active jobs; the quota is {active_limit} "
            "(COREBOARD_QUOTA_ACTIVE_JOBS). Wait for one to finish or cancel one."
        )
    chunk_limit = settings.COREBOARD_QUOTA_CHUNKS
    if cost.chunks and active.chunks + cost.chunks > chunk_limit:
        errors.append(
            f"{cost.subject} has {cost.chunks:,} chunks to run and your active jobs still have "
            f"{active.chunks:,}; the quota is {chunk_limit:,} chunks waiting or running "
            "(COREBOARD_QUOTA_CHUNKS)."
        )
    job_limit = settings.COREBOARD_QUOTA_JOB_S
    # A bound (a kind without an estimate) is no knowledge that the job is big: the total
    # below counts it, this cap refuses only jobs estimated to be too big.
    largest = cost.largest_job_cpu_seconds
    if largest is None and cost.estimated and cost.cpu_seconds > job_limit:
        errors.append(
            f"This job asks for {cost_words(cost)}; one job may ask for at most "
            f"{job_limit:,} (COREBOARD_QUOTA_JOB_S)."
        )
    elif largest is not None and largest > job_limit:
        errors.append(
            f"The largest job of {cost.subject.lower()} asks for about {largest:,.0f} CPU "
            f"seconds; one job may ask for at most {job_limit:,} (COREBOARD_QUOTA_JOB_S)."
        )
    seconds_limit = settings.COREBOARD_QUOTA_CHUNK_S
    if cost.cpu_seconds and cost.cpu_seconds + active.cpu_seconds > seconds_limit:
        errors.append(
            f"{cost.subject} asks for {cost_words(cost)} and your active jobs for "
            f"{active.cpu_seconds:,.0f} more; the quota is {seconds_limit:,} across active "
            "jobs (COREBOARD_QUOTA_CHUNK_S)."
        )
    return errors


def upload_quota_error(*, owner: Any, size: int) -> str | None:
    """Why `owner` may not store one more upload of `size` bytes, or None if they may.

    Counts the uploads stored and those being written (their reservations), so the answer
    holds only while the owner's upload lock is held (jobs.services.uploads reserves under it).
    """
    count, taken = _uploads_taken(owner)
    count_limit = settings.COREBOARD_QUOTA_UPLOADS
    if count + 1 > count_limit:
        return (
            f"You have {count} uploads; the quota is {count_limit} (COREBOARD_QUOTA_UPLOADS). "
            "Delete some you no longer need."
        )
    bytes_limit = settings.COREBOARD_QUOTA_UPLOAD_BYTES
    if taken + size > bytes_limit:
        return (
            f"Your uploads take {taken:,} bytes and this one {size:,}; the quota is "
            f"{bytes_limit:,} bytes (COREBOARD_QUOTA_UPLOAD_BYTES). Delete some you no "
            "longer need."
        )
    return None


def _uploads_taken(owner: Any) -> tuple[int, int]:
    """(files, bytes) of the owner's uploads, stored or being written, in one statement: one
    snapshot, so an upload whose row replaces its reservation meanwhile counts once."""
    stored = Upload.objects.filter(owner=owner).order_by().values("size")
    writing = (
        UploadReservation.objects.filter(
            owner=owner, created_at__gt=timezone.now() - UPLOAD_RESERVATION_TTL
        )
        .order_by()
        .values("size")
    )
    sql, values = stored.union(writing, all=True).query.sql_with_params()
    with connection.cursor() as cursor:
        # Django's own SQL for the union, its values passed as parameters.
        sql = f"SELECT count(*), coalesce(sum(size), 0) FROM ({sql}) AS taken"  # noqa: S608
        cursor.execute(sql, values)
        row = cursor.fetchone()
    return int(row[0]), int(row[1])
