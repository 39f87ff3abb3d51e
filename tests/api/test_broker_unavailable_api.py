"""The API while the broker (Redis) hangs: answers at once, says so, refuses what needs it."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import make_job
from tests.factories import succeeded_job as _succeeded
from tests.fake_redis import FakeRedis
from tokens import services as token_services

pytestmark = [pytest.mark.api, pytest.mark.django_db]

FAST_S = 1.0


def test_active_jobs_say_the_broker_is_unavailable_and_answer_at_once(
    alice: User, alice_api: APIClient, dispatched: list[int], hung_broker: FakeRedis
) -> None:
    active = make_job(alice)
    ended = _succeeded(alice)
    began = time.monotonic()
    detail = alice_api.get(reverse("api-job", args=[active.pk]))
    listing = alice_api.get(reverse("api-jobs"))
    # One Redis timeout (200 ms here) for the first read; the breaker answers the rest.
    assert time.monotonic() - began < FAST_S
    assert detail.status_code == listing.status_code == 200
    assert "broker (Redis) is not answering" in detail.json()["broker_unavailable"]
    notes = {job["id"]: job["broker_unavailable"] for job in listing.json()["results"]}
    assert notes[active.pk]
    # An ended job needs nothing from the broker.
    assert notes[ended.pk] is None


def test_a_job_says_nothing_while_the_broker_answers(
    alice: User, alice_api: APIClient, dispatched: list[int]
) -> None:
    active = make_job(alice)
    assert alice_api.get(reverse("api-job", args=[active.pk])).json()["broker_unavailable"] is None


def test_a_study_that_needs_the_live_processes_is_refused_while_the_broker_hangs(
    alice: User, alice_api: APIClient, dispatched: list[int], hung_broker: FakeRedis
) -> None:
    job = _succeeded(alice)
    refused = alice_api.post(reverse("api-studies"), {"job": job.pk}, format="json")
    assert refused.status_code == 409
    assert "broker (Redis) is not answering" in str(refused.json())


def test_metrics_say_redis_is_down_at_once(staff: User, hung_broker: FakeRedis) -> None:
    key = token_services.token_create(user=staff, name="prometheus").key
    began = time.monotonic()
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {key}")
    assert time.monotonic() - began < FAST_S
    assert response.status_code == 200
    assert "coreboard_redis_up 0.0" in response.content.decode()
