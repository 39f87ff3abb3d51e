"""Scaling studies through the API: create, read, cancel, export."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.selectors import studies as study_selectors
from tests.factories import succeeded_job as _succeeded
from tests.factories import workers_alive

pytestmark = pytest.mark.django_db


@pytest.mark.api
def test_api_creates_reads_cancels_and_exports(
    alice: User, alice_api: APIClient, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    workers_alive(monkeypatch, 3)
    job = _succeeded(alice)
    for body, field in (
        ({"job": "12"}, "job"),
        ({"job": True}, "job"),
        ({"job": 1, "jobs": 1}, "jobs"),
    ):
        refused = alice_api.post(reverse("api-studies"), body, format="json")
        assert refused.status_code == 400
        assert field in refused.json()
    created = alice_api.post(reverse("api-studies"), {"job": job.pk}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["levels"] == [1, 2, 3]
    assert [run["status"] for run in body["runs"]] == ["pending", "waiting", "waiting"]
    assert alice_api.get(reverse("api-study", args=[body["id"]])).json() == body
    exported = alice_api.get(reverse("api-study-export-csv", args=[body["id"]]))
    assert exported["Content-Type"] == "text/csv"
    assert exported.content.decode().splitlines()[0] == ",".join(
        study_selectors.STUDY_EXPORT_COLUMNS
    )
    cancelled = alice_api.post(reverse("api-study-cancel", args=[body["id"]]))
    assert cancelled.json()["status"] == "cancelled"
    assert alice_api.post(reverse("api-study-cancel", args=[body["id"]])).status_code == 409
