"""Actions on a job through the API: retry, run again, delete, and the chunk-count preview."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from jobs import protocol, services
from jobs.models import Chunk, Job
from tests.factories import (
    BAD_JOB_INPUT,
    BURN_DEFAULTS,
    JOB_FIELDS,
    make_job,
)

pytestmark = [pytest.mark.api, pytest.mark.django_db]


def test_api_retry_returns_the_running_job_then_conflicts(
    alice_api: APIClient, failed_job: Job
) -> None:
    response = alice_api.post(f"/api/jobs/{failed_job.pk}/retry/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["status"] == "running"
    assert body["failed_chunks"] == 0
    again = alice_api.post(f"/api/jobs/{failed_job.pk}/retry/")
    assert again.status_code == 409
    assert "nothing to retry" in again.json()["status"][0]


def test_api_delete(alice_api: APIClient, alice: User, failed_job: Job) -> None:
    response = alice_api.delete(f"/api/jobs/{failed_job.pk}/")
    assert response.status_code == 204
    assert not Job.objects.filter(pk=failed_job.pk).exists()
    assert alice_api.get(f"/api/jobs/{failed_job.pk}/").status_code == 404
    active = make_job(alice)
    conflict = alice_api.delete(f"/api/jobs/{active.pk}/")
    assert conflict.status_code == 409
    assert "cancel it before deleting it" in conflict.json()["status"][0]
    # One 409 shape everywhere (jobs.protocol.ConflictBody): `detail` as uploads' 409s have it.
    assert conflict.json() == {"detail": conflict.json()["status"][0], **conflict.json()}
    assert set(conflict.json()) == protocol.field_names(protocol.ConflictBody)
    assert Job.objects.filter(pk=active.pk).exists()


def test_api_rerun_creates_a_new_job(alice_api: APIClient, failed_job: Job) -> None:
    response = alice_api.post(f"/api/jobs/{failed_job.pk}/rerun/")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["id"] != failed_job.pk
    assert body["params"] == failed_job.params
    assert body["status"] == "pending"
    assert Job.objects.get(pk=body["id"]).rerun_of_id == failed_job.pk


def test_api_staff_may_act_on_any_job(staff: User, failed_job: Job) -> None:
    client = APIClient()
    client.force_authenticate(staff)
    rerun = client.post(f"/api/jobs/{failed_job.pk}/rerun/")
    assert rerun.status_code == 201
    assert Job.objects.get(pk=rerun.json()["id"]).owner == staff
    assert client.post(f"/api/jobs/{failed_job.pk}/retry/").status_code == 200


def test_api_actions_on_another_users_job_are_not_found(
    mallory_api: APIClient, failed_job: Job
) -> None:
    assert mallory_api.post(f"/api/jobs/{failed_job.pk}/retry/").status_code == 404
    assert mallory_api.post(f"/api/jobs/{failed_job.pk}/rerun/").status_code == 404
    assert mallory_api.delete(f"/api/jobs/{failed_job.pk}/").status_code == 404
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.FAILED
    assert Job.objects.count() == 1


def test_api_session_posts_need_the_csrf_token(alice: User, failed_job: Job) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    preview = {"kind": "burn", "params": BURN_DEFAULTS}
    for method, url, body in (
        ("post", f"/api/jobs/{failed_job.pk}/retry/", None),
        ("post", f"/api/jobs/{failed_job.pk}/rerun/", None),
        ("delete", f"/api/jobs/{failed_job.pk}/", None),
        ("post", "/api/jobs/preview/", preview),
    ):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 403, url
        assert "CSRF" in response.json()["detail"]
    assert Job.objects.count() == 1
    # With the token from a page, the same request goes through.
    client.get("/jobs/new/")
    token = client.cookies["csrftoken"].value
    response = client.post("/api/jobs/preview/", preview, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_api_preview_counts_chunks_and_creates_nothing(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/preview/",
        {"kind": "primes", "params": {"start": 0, "stop": 1000, "chunks": 7}, "parallelism": 2},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["chunks"] == 7
    # Form values arrive as strings from the page's script.
    strings = alice_api.post(
        "/api/jobs/preview/?form=1",
        {"kind": "burn", "params": {"chunks": "12", "ms": "5", "fail_rate": ""}},
        format="json",
    )
    assert strings.json()["chunks"] == 12
    typo = alice_api.post(
        "/api/jobs/preview/?form=1", {"kind": "burn", "params": {"chunks": "x"}}, format="json"
    )
    assert typo.json() == {"params": {"chunks": ["Enter a whole number."]}}
    assert not Job.objects.exists()
    assert not Chunk.objects.exists()


@pytest.mark.parametrize(("payload", "path", "message"), BAD_JOB_INPUT)
def test_api_preview_rejects_like_creation(
    alice_api: APIClient, payload: dict[str, Any], path: list[str], message: str
) -> None:
    previewed = alice_api.post("/api/jobs/preview/", payload, format="json")
    created = alice_api.post("/api/jobs/", payload, format="json")
    assert previewed.status_code == created.status_code == 400
    assert previewed.json() == created.json()
    errors = previewed.json()
    for key in path:
        errors = errors[key]
    assert message in " ".join(errors)
    assert not Job.objects.exists()


def test_api_preview_checks_upload_ownership(alice: User, mallory_api: APIClient) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("s.txt", b"a b"))
    response = mallory_api.post(
        "/api/jobs/preview/",
        {"kind": "wordcount", "params": {"upload": upload.pk, "chunks": 2, "top": 1}},
        format="json",
    )
    assert response.status_code == 400
    assert f"No upload with id {upload.pk}" in response.json()["params"]["upload"][0]
