"""Admission (jobs.services.admission): every kind's estimate, what retry and rerun count,
and the per-person lock that keeps parallel attempts within a quota."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from jobs import kinds, services
from jobs.engine import workers
from jobs.models import Chunk, Job, ScalingStudy
from jobs.services import admission, quotas, studies
from tests import kinds_function
from tests.factories import (
    BURN,
    finish_job,
    in_parallel,
    make_failed_job,
    make_job,
    succeeded_job,
)

pytestmark = [pytest.mark.services, pytest.mark.usefixtures("dispatched")]

# The parameters each built-in kind is tried with: its form's defaults, and an upload.
BUILT_IN = ("burn", "hash_search", "mandelbrot", "montecarlo_pi", "primes", "wordcount")


@pytest.mark.django_db
@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_kind_estimates_its_cost(alice: User, name: str) -> None:
    params: dict[str, Any] = {}
    if name == "wordcount":
        file = services.upload_create(owner=alice, file=_text(b"one two three " * 1000))
        params = {"upload": file.pk}
    plan = services.job_plan(owner=alice, kind=name, params=params)
    assert plan.cost.estimated
    assert plan.cost.cpu_seconds > 0
    job = services.job_create(owner=alice, kind=name, params=params)
    assert job.estimated_cpu_seconds == plan.cost.cpu_seconds


@pytest.mark.django_db
def test_wordcount_estimates_from_the_uploads_size(alice: User) -> None:
    small = services.upload_create(owner=alice, file=_text(b"word " * 1000))
    large = services.upload_create(owner=alice, file=_text(b"word " * 100_000))
    plans = [
        services.job_plan(owner=alice, kind="wordcount", params={"upload": upload.pk})
        for upload in (small, large)
    ]
    assert plans[1].cost.cpu_seconds == pytest.approx(100 * plans[0].cost.cpu_seconds)


@pytest.mark.django_db
def test_a_kind_without_an_estimate_counts_nothing_until_it_has_a_measured_pace(
    alice: User, bob: User
) -> None:
    with kinds_function.registered():
        kind = kinds.get(kinds_function.SCALED_NAME)
        assert kind.estimate_seconds({"values": [1], "factor": 1}) is None
        body: dict[str, Any] = {"kind": kind.name, "params": {"values": [1, 2, 3], "chunks": 3}}
        # No run of it yet: nothing known, nothing counted (not chunks × 600 s, which
        # would refuse any job of a few hundred chunks of a team's own function).
        plan = services.job_plan(owner=alice, **body)
        assert not plan.cost.estimated
        assert plan.cost.basis == quotas.Basis.NONE
        assert plan.cost.cpu_seconds == 0
        # Two succeeded runs: 10 CPU seconds over 4 chunks, 2 over 4 → 1.5 s per chunk.
        for cpu_seconds in (10.0, 2.0):
            job = make_job(alice, kind.name, values=[1, 2, 3, 4], chunks=4)
            Job.objects.filter(pk=job.pk).update(
                status=Job.Status.SUCCEEDED, done_chunks=4, cpu_seconds=cpu_seconds
            )
        paced = services.job_plan(owner=alice, **body)
        assert paced.cost.basis == quotas.Basis.PACE
        assert paced.cost.cpu_seconds == pytest.approx(3 * 1.5)
        assert "1.50 CPU seconds per chunk" in quotas.cost_words(paced.cost)
        # At most chunks × their time limit.
        capped = services.job_plan(owner=alice, chunk_time_limit_s=1, **body)
        assert capped.cost.cpu_seconds == pytest.approx(3 * 1)
        # The pace is the person's own: another's runs tell nothing about theirs.
        assert services.job_plan(owner=bob, **body).cost.basis == quotas.Basis.NONE


@pytest.mark.django_db
def test_a_measured_pace_counts_against_both_quotas(alice: User, settings: Any) -> None:
    with kinds_function.registered():
        kind = kinds.get(kinds_function.SCALED_NAME)
        job = make_job(alice, kind.name, values=[1, 2], chunks=2)
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.SUCCEEDED, done_chunks=2, cpu_seconds=20.0
        )
        body: dict[str, Any] = {
            "kind": kind.name,
            "params": {"values": [1, 2, 3, 4], "chunks": 4},
        }
        settings.COREBOARD_QUOTA_JOB_S = 39
        with pytest.raises(services.Rejected) as refused:
            services.job_create(owner=alice, **body)
    message = " ".join(refused.value.errors["quota"])
    assert "your latest runs of it took 10.00 CPU seconds per chunk, × 4 chunks" in message
    assert "COREBOARD_QUOTA_JOB_S" in message


@pytest.mark.django_db
def test_an_estimate_is_at_most_chunks_times_their_time_limit(alice: User) -> None:
    plan = services.job_plan(
        owner=alice, kind="burn", params={"chunks": 4, "ms": 300_000}, chunk_time_limit_s=10
    )
    assert plan.cost.cpu_seconds == 4 * 10


@pytest.mark.django_db
def test_the_per_job_quota_refuses_a_job_naming_its_estimate(alice: User) -> None:
    params = {"chunks": 20, "ms": 300_000}
    estimate = kinds.get("burn").estimate_seconds(kinds.get("burn").clean_params(params))
    with pytest.raises(services.Rejected) as refused:
        services.job_create(owner=alice, kind="burn", params=params)
    message = " ".join(refused.value.errors["quota"])
    assert f"{estimate:,.0f} CPU seconds" in message
    assert "COREBOARD_QUOTA_JOB_S" in message
    assert not Job.objects.exists()


# --- retry and rerun ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_counts_the_share_of_the_estimate_it_runs_again(
    alice: User, failed_job: Job
) -> None:
    # failed_job: 4 chunks, one done; three run again.
    assert quotas.active_work(alice).cpu_seconds == 0
    services.job_retry_failed(job=failed_job)
    assert failed_job.estimated_cpu_seconds is not None
    expected = failed_job.estimated_cpu_seconds * 3 / 4
    assert quotas.active_work(alice).cpu_seconds == pytest.approx(expected)


@pytest.mark.django_db
def test_a_retry_is_refused_at_the_active_jobs_quota(
    alice: User, failed_job: Job, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 2
    make_job(alice)
    make_job(alice)
    with pytest.raises(services.Rejected) as refused:
        services.job_retry_failed(job=failed_job)
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in " ".join(refused.value.errors["quota"])
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.FAILED
    assert not failed_job.chunks.filter(status=Chunk.Status.PENDING).exists()


@pytest.mark.django_db
def test_a_retry_is_refused_at_the_chunks_quota(
    alice: User, failed_job: Job, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_CHUNKS = 5
    make_job(alice, chunks=3)
    with pytest.raises(services.Rejected) as refused:
        services.job_retry_failed(job=failed_job)
    message = " ".join(refused.value.errors["quota"])
    assert "This job has 3 chunks to run" in message
    assert "COREBOARD_QUOTA_CHUNKS" in message
    assert failed_job.chunks.filter(status=Chunk.Status.PENDING).count() == 0


@pytest.mark.django_db
def test_a_retry_is_refused_at_the_cpu_seconds_quota(
    alice: User, failed_job: Job, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_CHUNK_S = 99
    make_job(alice, chunks=1, ms=99_000)
    with pytest.raises(services.Rejected) as refused:
        services.job_retry_failed(job=failed_job)
    assert "COREBOARD_QUOTA_CHUNK_S" in " ".join(refused.value.errors["quota"])


@pytest.mark.django_db
def test_a_rerun_counts_the_whole_jobs_estimate(alice: User, settings: Any) -> None:
    job = make_job(alice, chunks=2, ms=1000)
    finish_job(job)
    settings.COREBOARD_QUOTA_CHUNK_S = 1
    with pytest.raises(services.Rejected) as refused:
        services.job_rerun(job=job, owner=alice)
    assert "COREBOARD_QUOTA_CHUNK_S" in " ".join(refused.value.errors["quota"])


# --- under concurrency ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_20_parallel_creations_never_pass_the_active_jobs_quota(alice: User) -> None:
    for _ in range(7):
        services.job_create(owner=alice, **BURN)

    def attempt(_: int) -> str:
        try:
            services.job_create(owner=alice, **BURN)
        except services.Rejected as refused:
            return " ".join(refused.messages)
        return "created"

    outcomes = in_parallel(attempt)
    assert outcomes.count("created") == 3
    assert all("COREBOARD_QUOTA_ACTIVE_JOBS" in o for o in outcomes if o != "created")
    assert Job.objects.filter(owner=alice, status__in=Job.ACTIVE_STATUSES).count() == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_retries_never_pass_the_active_jobs_quota(alice: User) -> None:
    failed = [make_failed_job(alice) for _ in range(20)]
    for _ in range(8):
        services.job_create(owner=alice, **BURN)

    def attempt(index: int) -> bool:
        try:
            services.job_retry_failed(job=failed[index])
        except services.Rejected:
            return False
        return True

    assert sum(in_parallel(attempt)) == 2
    assert Job.objects.filter(owner=alice, status__in=Job.ACTIVE_STATUSES).count() == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_studies_never_pass_the_active_jobs_quota(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "live_workers", lambda: [])
    source = succeeded_job(alice)
    for _ in range(6):
        services.job_create(owner=alice, **BURN)

    def attempt(_: int) -> bool:
        try:
            studies.study_create(owner=alice, job=source, processes=2)
        except services.Rejected:
            return False
        return True

    assert sum(in_parallel(attempt)) == 4
    assert ScalingStudy.objects.count() == 4
    assert Job.objects.filter(owner=alice, status__in=Job.ACTIVE_STATUSES).count() == 10


def _text(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("words.txt", data, content_type="text/plain")


@pytest.mark.django_db(transaction=True)
def test_an_attempt_queued_past_the_lock_timeout_is_told_to_try_again(
    alice: User, other_session: Any, settings: Any
) -> None:
    """One held by another session (as 20 large parallel creations can) gets a 429 that
    says why, not the 503 of a busy job."""
    with other_session.transaction():
        other_session.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [admission.LOCK_SPACE, alice.pk]
        )
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 200")
        try:
            with pytest.raises(services.RateLimited) as refused:
                services.job_create(owner=alice, **BURN)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    assert refused.value.retry_after_s == admission.QUEUED_RETRY_AFTER_S
    assert "still being admitted" in refused.value.message
    assert not Job.objects.exists()
