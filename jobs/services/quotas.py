"""Per-person caps: active jobs, chunks waiting or running, estimated chunk-seconds, uploads.

Reads only; the services call these before writing and refuse with the message returned.
Each message names the limit and the variable that sets it (docs/security.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs import kinds
from jobs.kinds.base import Params
from jobs.models import Chunk, Job, Upload, UploadReservation

# A reservation older than this was left by a crash mid-write: it no longer counts.
UPLOAD_RESERVATION_TTL = timedelta(hours=1)


def job_estimated_seconds(job: Job) -> float:
    """CPU seconds the job's unfinished chunks still ask for (0 when the kind cannot say)."""
    try:
        estimate = kinds.get(job.kind).estimate_seconds(job.params)
    except kinds.UnknownKind:
        return 0.0
    if estimate is None or not job.total_chunks:
        return 0.0
    return estimate * (1 - job.done_chunks / job.total_chunks)


def job_quota_errors(
    *, owner: Any, kind: kinds.JobKind, params: Params, chunks: int
) -> dict[str, list[str]] | None:
    """Why `owner` may not start one more job of `chunks` chunks now, or None if they may.

    Counted across the person's active (pending or running) jobs, so finishing or
    cancelling a job frees its share.
    """
    active = list(Job.objects.filter(owner=owner, status__in=Job.ACTIVE_STATUSES))
    errors: list[str] = []
    active_limit = settings.COREBOARD_QUOTA_ACTIVE_JOBS
    if len(active) + 1 > active_limit:
        errors.append(
            f"You have {len(active)} active jobs; the quota is {active_limit} "
            "(COREBOARD_QUOTA_ACTIVE_JOBS). Wait for one to finish or cancel one."
        )
    chunk_limit = settings.COREBOARD_QUOTA_CHUNKS
    unfinished = Chunk.objects.filter(
        job__in=[job.pk for job in active], status__in=Chunk.UNFINISHED_STATUSES
    ).count()
    if unfinished + chunks > chunk_limit:
        errors.append(
            f"This job has {chunks:,} chunks and your active jobs still have {unfinished:,}; "
            f"the quota is {chunk_limit:,} chunks waiting or running (COREBOARD_QUOTA_CHUNKS)."
        )
    estimate = kind.estimate_seconds(params)
    if estimate is not None:
        seconds_limit = settings.COREBOARD_QUOTA_CHUNK_S
        others = sum(job_estimated_seconds(job) for job in active)
        if estimate + others > seconds_limit:
            errors.append(
                f"This job asks for about {estimate:,.0f} CPU seconds and your active jobs "
                f"for {others:,.0f} more; the quota is {seconds_limit:,} "
                "(COREBOARD_QUOTA_CHUNK_S)."
            )
    return {"quota": errors} if errors else None


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
