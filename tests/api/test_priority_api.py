"""A job's priority through the API and the command line (issue 23, item 3)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from coreboard import cli
from coreboard.client import Client
from jobs.models import Job
from jobs.options import PRIORITY_NAMES
from tests.factories import api_client_for

pytestmark = [pytest.mark.api]

BURN = {"kind": "burn", "params": {"chunks": 2, "ms": 1}}


def test_the_command_lines_priorities_are_the_servers() -> None:
    assert tuple(PRIORITY_NAMES) == cli.PRIORITIES


def test_submit_sends_a_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    def request(self: Client, method: str, path: str, **kwargs: Any) -> Any:
        sent.append({"method": method, "path": path, **kwargs})
        return SimpleNamespace(json=lambda: {"id": 7, "total_chunks": 2})

    monkeypatch.setenv("COREBOARD_URL", "http://example.invalid:1")
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    monkeypatch.setattr(Client, "_request", request)
    monkeypatch.setattr("coreboard.cli.suggested_params", lambda client, kind, values: {})
    result = CliRunner().invoke(cli.main, ["submit", "burn", "--priority", "high"])
    assert result.exit_code == 0, result.output
    assert sent[-1]["json"] == {"kind": "burn", "params": {}, "priority": "high"}
    refused = CliRunner().invoke(cli.main, ["submit", "burn", "--priority", "highest"])
    assert refused.exit_code == 2
    assert "highest" in refused.output


@pytest.mark.django_db
def test_the_api_takes_a_priority_by_name_and_shows_it(alice: User, alice_api: APIClient) -> None:
    created = alice_api.post("/api/jobs/", {**BURN, "priority": "high"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["priority"] == "high"
    assert Job.objects.get(pk=created.json()["id"]).priority == Job.Priority.HIGH
    plain = alice_api.post("/api/jobs/", BURN, format="json")
    assert plain.json()["priority"] == "normal"
    listed = alice_api.get("/api/jobs/").json()
    assert {job["priority"] for job in listed["results"]} == {"high", "normal"}


@pytest.mark.django_db
def test_the_api_refuses_a_bad_priority_or_an_urgent_one_without_permission(
    alice: User, alice_api: APIClient
) -> None:
    for value, words in [
        ("top", "Must be one of low, normal, high, urgent"),
        (4, "Must be a JSON string"),
        ("urgent", "Can submit urgent jobs"),
    ]:
        refused = alice_api.post("/api/jobs/", {**BURN, "priority": value}, format="json")
        assert refused.status_code == 400
        assert words in refused.json()["priority"][0]
    assert not Job.objects.exists()
    alice.user_permissions.add(Permission.objects.get(codename="submit_urgent"))
    alice_api = api_client_for(User.objects.get(pk=alice.pk))  # (permissions are cached)
    created = alice_api.post("/api/jobs/", {**BURN, "priority": "urgent"}, format="json")
    assert created.status_code == 201
    assert created.json()["priority"] == "urgent"
