"""Admission through the API: create, retry, rerun and studies refused at the quotas, also
when 20 attempts come at once, and throttled with 429 + Retry-After from one budget per
person; the preview tells the estimate and the quotas."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from jobs import kinds, services
from jobs.models import Job, ScalingStudy
from tests.factories import (
    BURN,
    active_jobs,
    api_client_for,
    in_parallel,
    make_failed_job,
    make_job,
    succeeded_job,
    workers_alive,
)

pytestmark = [pytest.mark.api, pytest.mark.usefixtures("dispatched")]

# The probe's job: 4096 × 2048 at 10,000 iterations, every pixel inside the set.
MANDELBROT_INSIDE = {
    "width": 4096, "height": 2048, "max_iter": 10_000,
    "x_min": -0.2, "x_max": 0.1, "y_min": -0.2, "y_max": 0.2, "chunks": 64,
}  # fmt: skip


# --- estimates ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_probes_mandelbrot_is_refused_with_its_estimate(alice_api: APIClient) -> None:
    kind = kinds.get("mandelbrot")
    estimate = kind.estimate_seconds(kind.clean_params(MANDELBROT_INSIDE))
    assert estimate is not None
    response = alice_api.post(
        "/api/jobs/", {"kind": "mandelbrot", "params": MANDELBROT_INSIDE}, format="json"
    )
    assert response.status_code == 400
    message = " ".join(response.json()["quota"])
    assert f"about {estimate:,.0f} CPU seconds ({estimate / 3600:,.1f} CPU-hours)" in message
    assert "COREBOARD_QUOTA_JOB_S" in message
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_preview_tells_the_estimate_and_the_quotas(
    alice: User, alice_api: APIClient, settings: Any
) -> None:
    make_job(alice, chunks=2, ms=3000)
    params = {"width": 320, "height": 200, "max_iter": 500, "chunks": 8}
    response = alice_api.post(
        "/api/jobs/preview/", {"kind": "mandelbrot", "params": params}, format="json"
    )
    assert response.status_code == 200
    kind = kinds.get("mandelbrot")
    assert response.json() == {
        "chunks": 8,
        "cpu_seconds": pytest.approx(kind.estimate_seconds(kind.clean_params(params))),
        "cpu_seconds_estimated": True,
        "cpu_seconds_basis": "kind",
        "quota_job_cpu_seconds": settings.COREBOARD_QUOTA_JOB_S,
        "quota_cpu_seconds": settings.COREBOARD_QUOTA_CHUNK_S,
        "active_cpu_seconds": pytest.approx(6.0),
    }


# --- quotas under concurrency, by path -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_20_parallel_api_creations_never_pass_the_quota(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-create"] = "1000/minute"
    for _ in range(7):
        services.job_create(owner=alice, **BURN)
    codes = in_parallel(lambda _: api_client_for(alice).post("/api/jobs/", BURN, format="json"))
    assert sorted(r.status_code for r in codes) == [201] * 3 + [400] * 17
    assert active_jobs(alice) == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_api_retries_never_pass_the_quota(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-action"] = "1000/minute"
    failed = [make_failed_job(alice) for _ in range(20)]
    for _ in range(8):
        services.job_create(owner=alice, **BURN)
    responses = in_parallel(
        lambda i: api_client_for(alice).post(f"/api/jobs/{failed[i].pk}/retry/")
    )
    assert sorted(r.status_code for r in responses) == [200] * 2 + [400] * 18
    refused = next(r for r in responses if r.status_code == 400)
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in " ".join(refused.json()["quota"])
    assert active_jobs(alice) == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_api_reruns_never_pass_the_quota(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-action"] = "1000/minute"
    source = succeeded_job(alice)
    for _ in range(5):
        services.job_create(owner=alice, **BURN)
    responses = in_parallel(lambda _: api_client_for(alice).post(f"/api/jobs/{source.pk}/rerun/"))
    assert sorted(r.status_code for r in responses) == [201] * 5 + [400] * 15
    assert active_jobs(alice) == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_api_studies_never_pass_the_quota(
    alice: User, rates: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rates["job-create"] = "1000/minute"
    workers_alive(monkeypatch, 2)
    source = succeeded_job(alice)
    for _ in range(6):
        services.job_create(owner=alice, **BURN)
    responses = in_parallel(
        lambda _: api_client_for(alice).post("/api/studies/", {"job": source.pk}, format="json")
    )
    assert sorted(r.status_code for r in responses) == [201] * 4 + [400] * 16
    assert ScalingStudy.objects.count() == 4
    assert active_jobs(alice) == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_api_creations_never_pass_the_rate(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-create"] = "4/minute"
    responses = in_parallel(lambda _: api_client_for(alice).post("/api/jobs/", BURN, format="json"))
    assert sorted(r.status_code for r in responses) == [201] * 4 + [429] * 16
    assert Job.objects.count() == 4


# --- rates: 429 with Retry-After, one budget ----------------------------------------------------


def assert_throttled(response: Any, variable: str) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"]
    assert variable in response.json()["detail"]


@pytest.mark.django_db
def test_api_retries_are_throttled(alice: User, rates: dict[str, str | None]) -> None:
    rates["job-action"] = "2/minute"
    failed = [make_failed_job(alice) for _ in range(3)]
    api = api_client_for(alice)
    assert [api.post(f"/api/jobs/{job.pk}/retry/").status_code for job in failed[:2]] == [200] * 2
    assert_throttled(api.post(f"/api/jobs/{failed[2].pk}/retry/"), "COREBOARD_RATE_JOB_ACTION")
    failed[2].refresh_from_db()
    assert failed[2].status == Job.Status.FAILED


@pytest.mark.django_db
def test_api_reruns_are_throttled(alice: User, rates: dict[str, str | None]) -> None:
    rates["job-action"] = "2/minute"
    source = succeeded_job(alice)
    api = api_client_for(alice)
    assert [api.post(f"/api/jobs/{source.pk}/rerun/").status_code for _ in range(2)] == [201] * 2
    assert_throttled(api.post(f"/api/jobs/{source.pk}/rerun/"), "COREBOARD_RATE_JOB_ACTION")
    assert Job.objects.count() == 3


@pytest.mark.django_db
def test_api_studies_share_the_creation_rate(
    alice: User, rates: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rates["job-create"] = "2/minute"
    workers_alive(monkeypatch, 2)
    source = succeeded_job(alice)
    api = api_client_for(alice)
    assert api.post("/api/jobs/", BURN, format="json").status_code == 201
    assert api.post("/api/studies/", {"job": source.pk}, format="json").status_code == 201
    assert_throttled(
        api.post("/api/studies/", {"job": source.pk}, format="json"), "COREBOARD_RATE_JOB_CREATE"
    )
    assert_throttled(api.post("/api/jobs/", BURN, format="json"), "COREBOARD_RATE_JOB_CREATE")
    assert ScalingStudy.objects.count() == 1


@pytest.mark.django_db
def test_a_quota_refusal_spends_from_the_rate_too(
    alice: User, rates: dict[str, str | None], settings: Any
) -> None:
    """Every attempt counts, as DRF's throttles count every request: refusals are not a way
    to probe for free."""
    rates["job-create"] = "2/minute"
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 1
    api = api_client_for(alice)
    assert api.post("/api/jobs/", BURN, format="json").status_code == 201
    assert api.post("/api/jobs/", BURN, format="json").status_code == 400
    assert_throttled(api.post("/api/jobs/", BURN, format="json"), "COREBOARD_RATE_JOB_CREATE")
