"""Sweeps through the API: create (all or nothing), list, read, cancel, export."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job, Sweep
from jobs.selectors import sweeps as sweep_selectors

pytestmark = [pytest.mark.api, pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]

SWEEP_3X3 = {"kind": "burn", "grid": {"chunks": [1, 2, 3], "ms": [1, 2, 3]}}


def test_a_3x3_sweep_creates_9_jobs_read_listed_exported_and_cancelled(
    alice_api: APIClient,
) -> None:
    created = alice_api.post(reverse("api-sweeps"), SWEEP_3X3, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert len(body["runs"]) == 9
    assert body["swept"] == ["chunks", "ms"]
    assert body["status"] == "running"
    assert body["counts"] == {"pending": 9}
    assert Job.objects.filter(sweep_id=body["id"]).count() == 9
    assert alice_api.get(reverse("api-sweep", args=[body["id"]])).json() == body
    listed = alice_api.get(reverse("api-sweeps")).json()
    assert [sweep["id"] for sweep in listed["results"]] == [body["id"]]
    exported = alice_api.get(reverse("api-sweep-export-csv", args=[body["id"]]))
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[0][:3] == ["index", "params.chunks", "params.ms"]
    assert rows[0][-len(sweep_selectors.SWEEP_FIGURE_COLUMNS) :] == list(
        sweep_selectors.SWEEP_FIGURE_COLUMNS
    )
    assert len(rows) == 10
    cancelled = alice_api.post(reverse("api-sweep-cancel", args=[body["id"]]))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = alice_api.post(reverse("api-sweep-cancel", args=[body["id"]]))
    assert again.status_code == 409


def test_a_sweep_over_quota_creates_nothing(alice_api: APIClient, settings: Any) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 5
    refused = alice_api.post(reverse("api-sweeps"), SWEEP_3X3, format="json")
    assert refused.status_code == 400
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in refused.json()["quota"][0]
    assert not Sweep.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SWEEP_3X3, "jobs": 3}, "jobs"),
        ({"kind": "burn"}, "grid"),
        ({"kind": "burn", "grid": {"chunks": [1, 2]}, "sets": [{}]}, "sets"),
        ({"kind": "burn", "grid": {"chunks": ["x", 2]}}, "params"),
        ({"kind": "burn", "grid": {"chunks": list(range(20)), "ms": list(range(20))}}, "grid"),
        ({"grid": {"chunks": [1, 2]}}, "kind"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    alice_api: APIClient, body: dict[str, Any], field: str
) -> None:
    refused = alice_api.post(reverse("api-sweeps"), body, format="json")
    assert refused.status_code == 400
    assert field in refused.json()
    assert not Job.objects.exists()


def test_the_run_limit_is_named_in_the_answer(alice_api: APIClient, settings: Any) -> None:
    settings.COREBOARD_SWEEP_MAX_RUNS = 4
    refused = alice_api.post(reverse("api-sweeps"), SWEEP_3X3, format="json")
    assert refused.status_code == 400
    assert "at most 4 jobs (COREBOARD_SWEEP_MAX_RUNS)" in refused.json()["grid"][0]


def test_another_persons_sweep_is_not_found(
    alice_api: APIClient, mallory_api: APIClient, mallory: User
) -> None:
    sweep_id = alice_api.post(reverse("api-sweeps"), SWEEP_3X3, format="json").json()["id"]
    for name, method in (
        ("api-sweep", "get"),
        ("api-sweep-export-csv", "get"),
        ("api-sweep-cancel", "post"),
    ):
        answer = getattr(mallory_api, method)(reverse(name, args=[sweep_id]))
        assert answer.status_code == 404, name
    assert mallory_api.get(reverse("api-sweeps")).json()["results"] == []
    assert Job.objects.filter(sweep_id=sweep_id, status="pending").count() == 9
