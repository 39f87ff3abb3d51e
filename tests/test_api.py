from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Chunk, Job

pytestmark = pytest.mark.django_db

JOB_FIELDS = {
    "id", "kind", "params", "status", "progress", "total_chunks", "done_chunks",
    "failed_chunks", "parallelism", "result", "error", "created_at", "started_at",
    "finished_at", "wall_seconds", "cpu_seconds", "speedup", "efficiency", "version",
}  # fmt: skip
CHUNK_FIELDS = {
    "index", "status", "attempts", "worker", "pid", "started_at", "finished_at",
    "cpu_seconds", "error",
}  # fmt: skip


@pytest.fixture
def alice_job(alice: User) -> Job:
    return services.job_create(
        owner=alice, kind="primes", params={"start": 0, "stop": 1000, "chunks": 4}, parallelism=2
    )


def test_create_returns_the_job(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/",
        {"kind": "primes", "params": {"start": 0, "stop": 100, "chunks": 2}, "parallelism": 3},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["status"] == "pending"
    assert body["total_chunks"] == 2
    assert body["parallelism"] == 3
    assert body["params"] == {"start": 0, "stop": 100, "chunks": 2}


@pytest.mark.parametrize(
    ("payload", "path", "message"),
    [
        ({"kind": "nope", "params": {}}, ["kind"], "Unknown kind 'nope'"),
        ({"params": {}}, ["kind"], "required"),
        (
            {"kind": "primes", "params": {"start": 9, "stop": 3, "chunks": 1}},
            ["params", "stop"],
            "greater than start",
        ),
        (
            {"kind": "primes", "params": {"start": 0, "stop": 10, "chunks": 0}},
            ["params", "chunks"],
            "greater than or equal to 1",
        ),
        (
            {"kind": "primes", "params": {"start": 0, "stop": 10, "chunks": 1, "x": 1}},
            ["params", "x"],
            "Unknown parameter",
        ),
        ({"kind": "primes", "params": [1, 2]}, ["params"], "dictionary"),
        (
            {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "parallelism": 0},
            ["parallelism"],
            "between 1 and",
        ),
        (
            {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "parallelism": "many"},
            ["parallelism"],
            "valid integer",
        ),
    ],
)
def test_bad_input_is_rejected_by_field_and_creates_nothing(
    alice_api: APIClient, payload: dict, path: list[str], message: str
) -> None:
    response = alice_api.post("/api/jobs/", payload, format="json")
    assert response.status_code == 400
    errors = response.json()
    for key in path:
        errors = errors[key]
    assert message in " ".join(errors)
    assert not Job.objects.exists()
    assert not Chunk.objects.exists()


def test_unauthenticated_requests_are_refused(alice_job: Job) -> None:
    client = APIClient()
    assert client.get("/api/jobs/").status_code == 401
    assert client.post("/api/jobs/", {"kind": "burn"}, format="json").status_code == 401
    assert client.get(f"/api/jobs/{alice_job.pk}/").status_code == 401


def test_token_authentication(alice: User, alice_job: Job) -> None:
    token = Token.objects.create(user=alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/jobs/")
    assert response.status_code == 200
    assert [job["id"] for job in response.json()["results"]] == [alice_job.pk]
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    assert client.get("/api/jobs/").status_code == 401


def test_list_is_paginated_newest_first_and_only_mine(
    alice: User, bob: User, alice_api: APIClient
) -> None:
    mine = [
        services.job_create(owner=alice, kind="burn", params={"chunks": 1, "ms": 1}).pk
        for _ in range(30)
    ]
    services.job_create(owner=bob, kind="burn", params={"chunks": 1, "ms": 1})
    first = alice_api.get("/api/jobs/").json()
    assert first["count"] == 30
    assert [job["id"] for job in first["results"]] == mine[::-1][:25]
    second = alice_api.get(first["next"]).json()
    assert [job["id"] for job in second["results"]] == mine[::-1][25:]


def test_detail_and_chunks(alice_api: APIClient, alice_job: Job) -> None:
    detail = alice_api.get(f"/api/jobs/{alice_job.pk}/").json()
    assert detail["id"] == alice_job.pk
    chunks = alice_api.get(f"/api/jobs/{alice_job.pk}/chunks/").json()
    assert chunks["count"] == 4
    assert [c["index"] for c in chunks["results"]] == [0, 1, 2, 3]
    assert set(chunks["results"][0]) == CHUNK_FIELDS


def test_cancel_then_cancel_again_conflicts(alice_api: APIClient, alice_job: Job) -> None:
    response = alice_api.post(f"/api/jobs/{alice_job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = alice_api.post(f"/api/jobs/{alice_job.pk}/cancel/")
    assert again.status_code == 409
    assert "already ended" in again.json()["status"][0]


def test_another_users_job_is_not_found(mallory_api: APIClient, alice_job: Job) -> None:
    for url in (f"/api/jobs/{alice_job.pk}/", f"/api/jobs/{alice_job.pk}/chunks/"):
        assert mallory_api.get(url).status_code == 404
    assert mallory_api.post(f"/api/jobs/{alice_job.pk}/cancel/").status_code == 404
    alice_job.refresh_from_db()
    assert alice_job.status == Job.Status.PENDING
    assert mallory_api.get("/api/jobs/").json()["count"] == 0


def test_staff_see_every_job(staff: User, alice_job: Job) -> None:
    client = APIClient()
    client.force_authenticate(staff)
    assert client.get(f"/api/jobs/{alice_job.pk}/").status_code == 200
