"""Every read, and the one JSON shape of a job shared by the API, the pages and the sockets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.urls import reverse

from jobs import kinds
from jobs.kinds.base import File
from jobs.models import Chunk, Job

User = AbstractBaseUser | AnonymousUser


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    """Staff see every job; everybody else sees only their own."""
    jobs = Job.objects.all()
    if not user.is_authenticated:
        return jobs.none()
    return jobs if user.is_staff else jobs.filter(owner=user)


def job_get_for_user(*, user: Any, job_id: int) -> Job | None:
    return jobs_visible_to(user).filter(pk=job_id).first()


def job_history(*, user: Any, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    jobs = jobs_visible_to(user).select_related("owner").order_by("-created_at", "-id")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs


def job_as_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "params": job.params,
        "status": job.status,
        "progress": round(job.progress, 4),
        "total_chunks": job.total_chunks,
        "done_chunks": job.done_chunks,
        "failed_chunks": job.failed_chunks,
        "parallelism": job.parallelism,
        "result": job.result,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "wall_seconds": _rounded(job.wall_seconds),
        "cpu_seconds": _rounded(job.cpu_seconds),
        "speedup": _rounded(job.speedup),
        "efficiency": _rounded(job.efficiency),
        "version": job.version,
        "result_file": (reverse("api-job-result-file", args=[job.pk]) if job.result_file else None),
    }


def chunk_as_dict(chunk: Chunk) -> dict[str, Any]:
    return {
        "index": chunk.index,
        "status": chunk.status,
        "attempts": chunk.attempts,
        "worker": chunk.worker,
        "pid": chunk.pid,
        "started_at": _iso(chunk.started_at),
        "finished_at": _iso(chunk.finished_at),
        "cpu_seconds": _rounded(chunk.cpu_seconds),
        "error": chunk.error,
    }


def job_chunks(job: Job) -> QuerySet[Chunk]:
    return job.chunks.order_by("index").defer("spec", "result")


def job_snapshot(*, job_id: int) -> dict[str, Any] | None:
    """The whole state of a job as a page or socket shows it when it (re)connects."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    return {"job": job_as_dict(job), "chunks": [chunk_as_dict(c) for c in job_chunks(job)]}


def chunk_preview(*, job: Job, index: int) -> File | None:
    """The kind's picture of one finished chunk, if the kind draws one."""
    chunk = job.chunks.filter(index=index, status=Chunk.Status.DONE).first()
    if chunk is None:
        return None
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return None
    return kind.preview(job.params, chunk.spec, chunk.result)


def overview(*, user: Any, recent: int = 10) -> dict[str, list[dict[str, Any]]]:
    """Active jobs (oldest first) and the most recently finished ones."""
    jobs = jobs_visible_to(user)
    active = jobs.filter(status__in=Job.ACTIVE_STATUSES).order_by("created_at", "id")
    finished = jobs.exclude(status__in=Job.ACTIVE_STATUSES).order_by("-finished_at", "-id")
    return {
        "active": [job_as_dict(job) for job in active],
        "recent": [job_as_dict(job) for job in finished[:recent]],
    }
