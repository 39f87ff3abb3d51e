"""Admission in a real daphne: 20 parallel HTTP requests of one person, each on a connection
of its own to the server, are admitted one after another (a rate, then the quotas)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from jobs import services
from jobs.models import Job
from tests.factories import in_parallel
from tokens import services as token_services

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Long enough to stay active if a worker of this test session runs it meanwhile.
LONG_BURN: dict[str, Any] = {"kind": "burn", "params": {"chunks": 1, "ms": 300_000}}


@pytest.fixture
def alice_key(alice: User) -> Iterator[str]:
    yield token_services.token_create(user=alice, name="admission").key
    for job in Job.objects.filter(status__in=Job.ACTIVE_STATUSES):
        services.job_cancel(job=job)


def post(url: str, key: str) -> httpx.Response:
    """One creation on a connection of its own."""
    return httpx.post(url, json=LONG_BURN, headers={"Authorization": f"Token {key}"}, timeout=60)


def test_20_parallel_creations_to_daphne_pass_the_rate_then_the_quota(
    daphne_server: str, alice: User, alice_key: str
) -> None:
    for _ in range(7):
        services.job_create(owner=alice, **LONG_BURN)
    # The defaults: 10 creations a minute, 10 active jobs. Ten pass the rate, of which the
    # three that fit the quota are created; the other ten are throttled.
    answers = in_parallel(lambda _: post(f"{daphne_server}/api/jobs/", alice_key))
    assert sorted(r.status_code for r in answers) == [201] * 3 + [400] * 7 + [429] * 10
    throttled = [r for r in answers if r.status_code == 429]
    assert all(0 < int(r.headers["Retry-After"]) <= 60 for r in throttled)
    assert all("COREBOARD_RATE_JOB_CREATE" in r.json()["detail"] for r in throttled)
    refused = [r for r in answers if r.status_code == 400]
    assert all("COREBOARD_QUOTA_ACTIVE_JOBS" in " ".join(r.json()["quota"]) for r in refused)
    assert Job.objects.filter(owner=alice, status__in=Job.ACTIVE_STATUSES).count() == 10
