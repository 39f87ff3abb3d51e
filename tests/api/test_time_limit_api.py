"""A job's chunk time limit through the API: asked for, shown, documented, refused by
name when outside its kind's limit."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs import kinds
from jobs.models import Job

pytestmark = [pytest.mark.api, pytest.mark.django_db]


def test_a_job_asks_for_a_chunk_time_limit_and_shows_it(alice_api: APIClient) -> None:
    body = {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "chunk_time_limit_s": 30}
    created = alice_api.post("/api/jobs/", body, format="json")
    assert created.status_code == 201
    assert created.json()["chunk_time_limit_s"] == 30
    job = Job.objects.get()
    assert job.chunk_time_limit_s == 30
    shown = alice_api.get(f"/api/jobs/{job.pk}/").json()
    assert shown["chunk_time_limit_s"] == 30


def test_a_limit_above_the_kind_s_is_refused_naming_the_field_and_the_limit(
    alice_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(type(kinds.get("burn")), "time_limit_s", 20)
    body = {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "chunk_time_limit_s": 21}
    refused = alice_api.post("/api/jobs/", body, format="json")
    assert refused.status_code == 400
    assert refused.json()["chunk_time_limit_s"] == [
        "Must be between 1 and 20 s (the kind's time limit)."
    ]
    assert not Job.objects.exists()


def test_the_new_job_page_s_preview_reads_the_limit_as_a_form_holds_it(
    alice_api: APIClient,
) -> None:
    body: dict[str, Any] = {"kind": "burn", "params": {"chunks": "2", "ms": "1"}}
    ok = alice_api.post(
        "/api/jobs/preview/?form=1", {**body, "chunk_time_limit_s": "9"}, format="json"
    )
    assert ok.status_code == 200
    assert ok.json()["chunks"] == 2
    bad = alice_api.post(
        "/api/jobs/preview/?form=1", {**body, "chunk_time_limit_s": "soon"}, format="json"
    )
    assert bad.status_code == 400
    assert "chunk_time_limit_s" in bad.json()


def test_the_schema_documents_the_limit_with_the_kind_s_maximum(
    alice_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(type(kinds.get("primes")), "time_limit_s", 45)
    schema = alice_api.get("/api/schema/", {"format": "json"}).json()
    option = schema["components"]["schemas"]["PrimesJobCreate"]["properties"]["chunk_time_limit_s"]
    assert (option["minimum"], option["maximum"], option["nullable"]) == (1, 45, True)
    assert "the kind's limit, 45 s" in option["description"]
