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


# How many of a person's latest succeeded jobs of a kind give its measured pace.
PACE_JOBS = 20


class Basis:
    """Where a cost's CPU seconds come from."""

    # The kind's `estimate_seconds` from the parameters.
    KIND = "kind"
    # The kind gives none: the person's latest succeeded runs of it, per chunk × chunks.
    PACE = "pace"
    # Neither: nothing is known yet, so no CPU seconds are counted (the chunk and
    # active-job quotas and each chunk's time limit still bound the job).
    NONE = "none"


@dataclass(frozen=True)
class Cost:
    """What admitting some work adds to a person's active work."""

    # Jobs it makes active: 1 for a new job and for a retried one.
    jobs: int
    # Chunks it makes pending.
    chunks: int
    # Estimated CPU seconds of those chunks (0 when nothing is known: Basis.NONE).
    cpu_seconds: float
    # Where cpu_seconds come from (a Basis value).
    basis: str = Basis.KIND
    # The measured CPU seconds per chunk (Basis.PACE).
    pace_s: float | None = None
    # Of several jobs admitted as one (`total`): the largest estimate of one of them, which
    # COREBOARD_QUOTA_JOB_S caps (None: this cost is one job's).
    largest_job_cpu_seconds: float | None = None

    @property
    def estimated(self) -> bool:
        """Whether the CPU seconds are known (by the kind, or by measured runs)."""
        return self.basis != Basis.NONE

    def share(self, chunks: int, total: int) -> Cost:
        """The cost of `chunks` of a job of `total` chunks (chunks are taken as equal)."""
        seconds = self.cpu_seconds * chunks / total if total else 0.0
        return Cost(1, chunks, seconds, self.basis, self.pace_s)

    @classmethod
    def total(cls, costs: list[Cost]) -> Cost:
        """The cost of several jobs admitted as one unit (a sweep): their jobs, chunks and
        CPU seconds summed."""
        bases = {cost.basis for cost in costs}
        return cls(
            jobs=sum(cost.jobs for cost in costs),
            chunks=sum(cost.chunks for cost in costs),
            cpu_seconds=sum(cost.cpu_seconds for cost in costs),
            # One kind, so one basis (a mix counts as the kind's own estimate).
            basis=bases.pop() if len(bases) == 1 else Basis.KIND,
            pace_s=costs[0].pace_s if costs else None,
            largest_job_cpu_seconds=max((cost.cpu_seconds for cost in costs), default=0.0),
        )

    @property
    def subject(self) -> str:
        """What the quota messages call this work."""
        return "This job" if self.jobs <= 1 else f"This sweep of {self.jobs} jobs"


def kind_pace(*, owner: Any, kind: str) -> float | None:
    """CPU seconds per chunk of `owner`'s latest succeeded jobs of `kind` (at most
    PACE_JOBS of them), or None when there are none."""
    rows = (
        Job.objects.filter(owner=owner, kind=kind, status=Job.Status.SUCCEEDED, done_chunks__gt=0)
        .order_by("-id")
        .values_list("cpu_seconds", "done_chunks")[:PACE_JOBS]
    )
    seconds = chunks = 0.0
    for cpu_seconds, done in rows:
        seconds += cpu_seconds
        chunks += done
    return seconds / chunks if chunks else None


def job_cost(
    *, owner: Any, kind: kinds.JobKind, params: Params, chunks: int, time_limit_s: int
) -> Cost:
    """The cost of a new job of `kind`: its kind's estimate from `params` (what `split`
    gets, uploads resolved), at most `chunks` × `time_limit_s` (a chunk that runs longer
    is stopped). A kind that cannot estimate (`estimate_seconds` is None, as a team's
    function may) is counted by the owner's measured pace of it, and by nothing until it
    has one: counting such a job at chunks × its time limit would refuse any job of a
    few hundred chunks of a team's own function (docs/decisions.md)."""
    bound = float(chunks * time_limit_s)
    estimate = kind.estimate_seconds(params)
    if estimate is not None:
        return Cost(1, chunks, min(max(float(estimate), 0.0), bound))
    pace = kind_pace(owner=owner, kind=kind.name)
    if pace is None:
        return Cost(1, chunks, 0.0, Basis.NONE)
    return Cost(1, chunks, min(pace * chunks, bound), Basis.PACE, pace)


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
        "cpu_seconds_basis": cost.basis,
        "quota_job_cpu_seconds": settings.COREBOARD_QUOTA_JOB_S,
        "quota_cpu_seconds": settings.COREBOARD_QUOTA_CHUNK_S,
        "active_cpu_seconds": active_work(owner).cpu_seconds,
    }


def cost_words(cost: Cost) -> str:
    """How the cost was counted, for a message: `about 8,213 CPU seconds (2.3 CPU-hours)`."""
    words = f"about {cost.cpu_seconds:,.0f} CPU seconds"
    if cost.cpu_seconds >= 3600:
        words += f" ({cost.cpu_seconds / 3600:,.1f} CPU-hours)"
    if cost.basis == Basis.PACE and cost.pace_s is not None:
        words += (
            f" (its kind gives no estimate: your latest runs of it took {cost.pace_s:,.2f} "
            f"CPU seconds per chunk, × {cost.chunks:,} chunks)"
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
    largest = cost.largest_job_cpu_seconds
    if largest is None and cost.cpu_seconds > job_limit:
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
