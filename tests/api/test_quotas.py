"""Per-person quotas (jobs.services.quotas) and API rate limits, through the API."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job, Upload
from tests.factories import BURN

# Jobs are made here and never dispatched.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]


@pytest.mark.api
def test_the_default_quota_is_10_active_jobs_and_the_11th_is_refused_naming_it(
    alice: User, alice_api: APIClient
) -> None:
    for _ in range(10):
        services.job_create(owner=alice, **BURN)
    response = alice_api.post("/api/jobs/", BURN, format="json")
    assert response.status_code == 400
    message = " ".join(response.json()["quota"])
    assert "quota is 10" in message
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in message
    assert Job.objects.count() == 10


@pytest.mark.api
def test_a_finished_job_frees_its_place(alice: User, alice_api: APIClient) -> None:
    jobs = [services.job_create(owner=alice, **BURN) for _ in range(10)]
    services.job_cancel(job=jobs[0])
    assert alice_api.post("/api/jobs/", BURN, format="json").status_code == 201


@pytest.mark.api
def test_a_burn_of_10000_chunks_of_300_s_is_refused_by_default(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/",
        {"kind": "burn", "params": {"chunks": 10_000, "ms": 300_000}, "parallelism": 1024},
        format="json",
    )
    assert response.status_code == 400
    assert "COREBOARD_QUOTA_CHUNK_S" in " ".join(response.json()["quota"])
    assert not Job.objects.exists()


@pytest.mark.api
def test_the_preview_tells_about_the_quota_too(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/preview/",
        {"kind": "burn", "params": {"chunks": 10_000, "ms": 300_000}},
        format="json",
    )
    assert response.status_code == 400
    assert "quota" in response.json()


@pytest.mark.api
def test_chunks_waiting_or_running_are_capped(
    alice: User, alice_api: APIClient, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_CHUNKS = 15
    services.job_create(owner=alice, kind="burn", params={"chunks": 10, "ms": 1})
    response = alice_api.post(
        "/api/jobs/", {"kind": "burn", "params": {"chunks": 6, "ms": 1}}, format="json"
    )
    assert response.status_code == 400
    assert "COREBOARD_QUOTA_CHUNKS" in " ".join(response.json()["quota"])


@pytest.mark.api
def test_a_10000_chunk_job_is_accepted_by_default(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/", {"kind": "burn", "params": {"chunks": 10_000, "ms": 1}}, format="json"
    )
    assert response.status_code == 201, response.json()


def text_file(name: str = "a.txt", size: int = 10) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"w " * (size // 2), content_type="text/plain")


@pytest.mark.api
def test_upload_count_and_bytes_are_capped(
    alice: User, alice_api: APIClient, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_UPLOADS = 2
    settings.COREBOARD_QUOTA_UPLOAD_BYTES = 30
    assert alice_api.post("/api/uploads/", {"file": text_file(size=20)}).status_code == 201
    too_big = alice_api.post("/api/uploads/", {"file": text_file(size=20)})
    assert too_big.status_code == 400
    assert "COREBOARD_QUOTA_UPLOAD_BYTES" in too_big.json()["file"][0]
    assert alice_api.post("/api/uploads/", {"file": text_file(size=10)}).status_code == 201
    too_many = alice_api.post("/api/uploads/", {"file": text_file(size=2)})
    assert too_many.status_code == 400
    assert "COREBOARD_QUOTA_UPLOADS" in too_many.json()["file"][0]
    assert Upload.objects.count() == 2


# --- rate limits --------------------------------------------------------------------------------


@pytest.mark.api
def test_20_creations_in_a_second_are_throttled_with_retry_after(alice_api: APIClient) -> None:
    # Default settings: 10 creations a minute (and 10 active jobs).
    began = time.monotonic()
    responses = [alice_api.post("/api/jobs/", BURN, format="json") for _ in range(20)]
    assert time.monotonic() - began < 10
    assert [r.status_code for r in responses] == [201] * 10 + [429] * 10
    assert 0 < int(responses[-1]["Retry-After"]) <= 60
    assert "throttled" in responses[-1].json()["detail"]
    assert Job.objects.count() == 10


@pytest.mark.api
def test_throttles_are_per_person(
    alice_api: APIClient, rates: dict[str, str | None], bob: User
) -> None:
    rates["job-create"] = "2/minute"
    for _ in range(2):
        alice_api.post("/api/jobs/", BURN, format="json")
    assert alice_api.post("/api/jobs/", BURN, format="json").status_code == 429
    bob_api = APIClient()
    bob_api.force_authenticate(bob)
    assert bob_api.post("/api/jobs/", BURN, format="json").status_code == 201
    assert alice_api.get("/api/jobs/").status_code == 200  # reading is not throttled


@pytest.mark.api
@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ("job-preview", "/api/jobs/preview/"),
        ("upload", "/api/uploads/"),
    ],
)
def test_other_writes_are_throttled(
    alice_api: APIClient, rates: dict[str, str | None], scope: str, path: str
) -> None:
    rates[scope] = "1/minute"
    alice_api.post(path, {}, format="json")
    response = alice_api.post(path, {}, format="json")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
