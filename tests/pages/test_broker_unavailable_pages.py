"""Pages while the broker (Redis) hangs: the overview answers at once and says so."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse

from tests.fake_redis import FakeRedis

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


def test_the_overview_answers_at_once_and_says_the_broker_is_unavailable(
    alice_client: Client, hung_broker: FakeRedis
) -> None:
    began = time.monotonic()
    response = alice_client.get(reverse("jobs:overview"))
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
