from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from jobs import services
from jobs.api.parsers import BodyTooLarge, DepthLimitedJSONParser
from jobs.middleware import Message, Receive, RequestBodyLimit, Scope, Send
from jobs.models import Chunk, Job, Upload
from launcher.limits import ENVELOPE_BYTES
from tests.factories import BAD_JOB_INPUT, CHUNK_FIELDS, JOB_FIELDS, make_job
from tokens.services import token_create

pytestmark = [pytest.mark.api, pytest.mark.django_db]


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


@pytest.mark.parametrize(("payload", "path", "message"), BAD_JOB_INPUT)
def test_bad_input_is_rejected_by_field_and_creates_nothing(
    alice_api: APIClient, payload: dict[str, Any], path: list[str], message: str
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
    key = token_create(user=alice, name="test").key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/jobs/")
    assert response.status_code == 200
    assert [job["id"] for job in response.json()["results"]] == [alice_job.pk]
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    assert client.get("/api/jobs/").status_code == 401


def test_list_is_paginated_newest_first_and_only_mine(
    alice: User, bob: User, alice_api: APIClient, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 100
    mine = [make_job(alice, chunks=1, ms=1).pk for _ in range(30)]
    make_job(bob, chunks=1, ms=1)
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


def test_one_chunk_by_index(alice_api: APIClient, alice_job: Job) -> None:
    # What a job page asks for when a person opens a chunk: no page carries every chunk.
    one = alice_api.get(f"/api/jobs/{alice_job.pk}/chunks/2/").json()
    assert one["index"] == 2
    assert set(one) == CHUNK_FIELDS
    assert alice_api.get(f"/api/jobs/{alice_job.pk}/chunks/4/").status_code == 404


def test_cancel_then_cancel_again_conflicts(alice_api: APIClient, alice_job: Job) -> None:
    response = alice_api.post(f"/api/jobs/{alice_job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = alice_api.post(f"/api/jobs/{alice_job.pk}/cancel/")
    assert again.status_code == 409
    assert "already ended" in again.json()["status"][0]


def test_another_users_job_is_not_found(mallory_api: APIClient, alice_job: Job) -> None:
    for url in (
        f"/api/jobs/{alice_job.pk}/",
        f"/api/jobs/{alice_job.pk}/chunks/",
        f"/api/jobs/{alice_job.pk}/chunks/0/",
    ):
        assert mallory_api.get(url).status_code == 404
    assert mallory_api.post(f"/api/jobs/{alice_job.pk}/cancel/").status_code == 404
    alice_job.refresh_from_db()
    assert alice_job.status == Job.Status.PENDING
    assert mallory_api.get("/api/jobs/").json()["count"] == 0


def test_staff_see_every_job(staff: User, alice_job: Job) -> None:
    client = APIClient()
    client.force_authenticate(staff)
    assert client.get(f"/api/jobs/{alice_job.pk}/").status_code == 200


def test_upload_then_wordcount_job(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/uploads/",
        {"file": SimpleUploadedFile("words.txt", b"to be or not to be\n")},
        format="multipart",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "size"}
    assert body["name"] == "words.txt"
    assert body["size"] == 19
    created = alice_api.post(
        "/api/jobs/",
        {"kind": "wordcount", "params": {"upload": body["id"], "chunks": 2, "top": 2}},
        format="json",
    )
    assert created.status_code == 201
    assert created.json()["params"]["upload"] == body["id"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "multipart form data in the field `file`"),
        ({"file": SimpleUploadedFile("e.txt", b"")}, "empty"),
        ({"file": SimpleUploadedFile("b.bin", b"\x89PNG\x00\x01")}, "binary"),
        ({"file": SimpleUploadedFile("l.txt", b"na\xefve")}, "not valid UTF-8"),
    ],
)
def test_bad_uploads_are_rejected(
    alice_api: APIClient, payload: dict[str, Any], message: str
) -> None:
    response = alice_api.post("/api/uploads/", payload, format="multipart")
    assert response.status_code == 400
    assert message in response.json()["file"][0]
    assert not Upload.objects.exists()


def test_someone_elses_upload_cannot_be_used(alice: User, mallory_api: APIClient) -> None:
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("secret.txt", b"alice's words")
    )
    response = mallory_api.post(
        "/api/jobs/",
        {"kind": "wordcount", "params": {"upload": upload.pk, "chunks": 1, "top": 1}},
        format="json",
    )
    assert response.status_code == 400
    assert f"No upload with id {upload.pk}" in response.json()["params"]["upload"][0]
    assert not Job.objects.exists()


def test_result_file_and_preview_of_another_users_job_are_not_found(
    mallory_api: APIClient, alice_job: Job
) -> None:
    assert mallory_api.get(f"/api/jobs/{alice_job.pk}/result-file/").status_code == 404
    assert mallory_api.get(f"/api/jobs/{alice_job.pk}/chunks/0/preview/").status_code == 404


def test_a_result_file_the_server_cannot_read_is_a_503_saying_so_and_a_missing_one_404(
    alice_api: APIClient, alice_job: Job, settings: Any
) -> None:
    # An entry the web cannot open, whoever runs the suite: a folder where the file should be
    # (a file another user owns, as a root worker left them, is the integration test's).
    name = f"results/unreadable-{alice_job.pk}.png"
    (settings.MEDIA_ROOT / name).mkdir(parents=True)
    try:
        Job.objects.filter(pk=alice_job.pk).update(result_file=name)
        response = alice_api.get(f"/api/jobs/{alice_job.pk}/result-file/")
        assert response.status_code == 503
        assert "exists but this server cannot read it" in response.json()["detail"]
    finally:
        (settings.MEDIA_ROOT / name).rmdir()
    response = alice_api.get(f"/api/jobs/{alice_job.pk}/result-file/")
    assert response.status_code == 404
    assert "missing" in response.json()["detail"]


async def test_body_limit_refuses_oversized_requests_before_reading_them() -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append("app")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        raise AssertionError("the body must not be read")

    limited = RequestBodyLimit(app, max_bytes=10)
    scope: Scope = {
        "type": "http",
        "headers": [(b"content-length", str(10 + ENVELOPE_BYTES + 1).encode())],
    }
    await limited(scope, receive, send)
    assert calls == []
    assert sent[0]["status"] == 413
    assert b"larger than the limit of 10 bytes" in sent[1]["body"]


def test_omitted_parameters_take_the_forms_initial_values_and_are_stored(
    alice_api: APIClient,
) -> None:
    response = alice_api.post("/api/jobs/", {"kind": "burn", "params": {"ms": 5}}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["params"] == {"chunks": 8, "ms": 5, "fail_rate": 0.0}
    assert Job.objects.get().params == {"chunks": 8, "ms": 5, "fail_rate": 0.0}


def test_an_integer_valued_number_is_an_integer(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/", {"kind": "burn", "params": {"chunks": 3.0, "ms": 1}}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["total_chunks"] == 3


def test_json_nested_10000_deep_is_a_400(alice_api: APIClient) -> None:
    body = '{"kind": "burn", "params": ' + "[" * 10_000 + "]" * 10_000 + "}"
    response = alice_api.post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than" in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_json_body_over_the_memory_limit_is_a_json_413(alice_api: APIClient) -> None:
    padding = "x" * (3 * 1024 * 1024)
    body = '{"kind": "burn", "params": {"prefix": "' + padding + '"}}'
    response = alice_api.post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 413
    # Django's own check (RequestDataTooBig) or the parser's, whichever reads first.
    assert (
        "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
        or "at most" in (response.json()["detail"])
    )


def test_json_nested_a_little_too_deep_is_a_400(alice_api: APIClient) -> None:
    body = '{"kind": "burn", "params": {"chunks": ' + "[" * 40 + "]" * 40 + "}}"
    response = alice_api.post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than" in response.json()["detail"]


def test_too_many_form_fields_is_a_json_400(alice_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=1" for i in range(50))
    response = alice_api.post("/api/jobs/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]


def test_an_unknown_api_url_is_a_json_404(alice_api: APIClient) -> None:
    response = alice_api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_the_json_parser_stops_reading_at_the_memory_limit(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    with pytest.raises(BodyTooLarge, match="at most 100 bytes"):
        DepthLimitedJSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 200 + b'"}'))
    assert DepthLimitedJSONParser().parse(io.BytesIO(b'{"a": 1}')) == {"a": 1}
