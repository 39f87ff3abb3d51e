"""Object builders and engine steps for tests: one way to make a job, claim and finish chunks."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from jobs import services
from jobs.models import Job
from jobs.services import chunks

TEST_OWNER = "test-host|1|boot"


def burn_job(
    owner: User, *, chunks: int = 4, parallelism: int = 2, ms: int = 1, fail_rate: float = 0.0
) -> Job:
    return services.job_create(
        owner=owner,
        kind="burn",
        params={"chunks": chunks, "ms": ms, "fail_rate": fail_rate},
        parallelism=parallelism,
    )


def create_committed(owner: User, kind: str, params: dict[str, Any], parallelism: int = 2) -> Job:
    """A job created in its own transaction, so that it is dispatched to real workers."""
    with transaction.atomic():
        return services.job_create(owner=owner, kind=kind, params=params, parallelism=parallelism)


def start(job: Job) -> None:
    """What a job's first slot does: mark it running."""
    chunks.job_start_if_pending(job_id=job.pk)
    job.refresh_from_db()


def claim(job: Job, *, owner: str = TEST_OWNER, limit: int = 1) -> list[chunks.Claim]:
    host, pid, _ = owner.split("|")
    claimer = chunks.Claimer(owner=owner, worker=host, pid=int(pid))
    return chunks.chunks_claim(job_id=job.pk, claimer=claimer, limit=limit)


def claim_one(job: Job, *, owner: str = TEST_OWNER) -> chunks.Claim:
    claimed = claim(job, owner=owner)
    assert len(claimed) == 1, "expected a claimable chunk"
    return claimed[0]


def done(claimed: chunks.Claim, result: Any = None, cpu_seconds: float = 0.5) -> chunks.Done:
    now = timezone.now()
    return chunks.Done(claimed.id, result or {"iterations": 1}, cpu_seconds, now, now)


def complete(job: Job, claimed: chunks.Claim, result: Any = None, cpu: float = 0.5) -> None:
    chunks.chunks_record(job_id=job.pk, outcomes=[done(claimed, result, cpu)])


def complete_next(job: Job, result: Any = None, *, owner: str = TEST_OWNER) -> chunks.Claim:
    claimed = claim_one(job, owner=owner)
    complete(job, claimed, result)
    return claimed


def fail_next(job: Job, error: str = "Traceback...\nRuntimeError: boom") -> chunks.Claim:
    """Claim the next chunk and fail it for good (its retries used up)."""
    claimed = claim_one(job)
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Raised(claimed.id, error, final=True)])
    return claimed
