"""Pages while the broker (Redis) hangs: they answer at once and say so."""

from __future__ import annotations

import time
from typing import Any

import pytest
from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.factories import make_job, succeeded_job
from tests.fake_redis import FakeRedis

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


def warm_up(client: Client) -> None:
    """A page that needs no Redis, so the first request's imports (the URL conf, the
    views) are not counted against the broker."""
    assert client.get(reverse("jobs:list")).status_code == 200


def test_the_overview_answers_at_once_and_says_the_broker_is_unavailable(
    alice_client: Client, hung_broker: FakeRedis
) -> None:
    warm_up(alice_client)
    url = reverse("jobs:overview")
    began = time.monotonic()
    response = alice_client.get(url)
    assert time.monotonic() - began < 1.0
    assert response.status_code == 200
    assert 'id="broker-unavailable"' in response.content.decode()
    assert "broker (Redis) is not answering" in response.content.decode()


def test_the_overview_has_no_broker_note_while_it_answers(alice_client: Client) -> None:
    assert (
        'id="broker-unavailable"' not in alice_client.get(reverse("jobs:overview")).content.decode()
    )


def test_draining_a_node_says_the_broker_did_not_answer(
    staff_client: Client, hung_broker: FakeRedis
) -> None:
    response = staff_client.post(
        reverse("jobs:node-control"),
        {"node": "alpha@host", "action": "drain"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 503
    assert "broker (Redis) did not answer" in response.json()["message"]


def test_an_active_job_page_says_the_broker_is_unavailable(
    alice: User, alice_client: Client, dispatched: list[int], hung_broker: FakeRedis
) -> None:
    active = make_job(alice)
    ended = succeeded_job(alice)
    warm_up(alice_client)
    url = reverse("jobs:detail", args=[active.pk])
    began = time.monotonic()
    page = alice_client.get(url).content.decode()
    assert time.monotonic() - began < 1.0
    assert 'id="broker-unavailable"' in page
    ended_page = alice_client.get(reverse("jobs:detail", args=[ended.pk])).content.decode()
    assert 'id="broker-unavailable"' not in ended_page


def test_a_sign_in_while_redis_hangs_is_refused_at_once_with_a_reason(
    alice: User, settings: Any, hung_broker: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lockout counters (django-axes) live in the cache, on the same Redis; axes keeps
    # the cache it was first given, so it is made afresh here.
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": hung_broker.url}}
    monkeypatch.setattr(AxesProxyHandler, "implementation", None)
    client = Client()
    warm_up_url = reverse("login")
    assert client.get(warm_up_url).status_code == 200
    began = time.monotonic()
    response = client.post(warm_up_url, {"username": alice.username, "password": "guess"})
    assert time.monotonic() - began < 1.0
    assert response.status_code == 503
    assert "broker (Redis) is not answering" in response.content.decode()
