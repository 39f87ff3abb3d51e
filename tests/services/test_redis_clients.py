"""The Redis clients' timeouts and breaker, against a loopback server that answers or,
like a stopped Redis, accepts connections and never replies."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from jobs.engine import redis_clients
from tests.fake_redis import FakeRedis

pytestmark = pytest.mark.services


@pytest.fixture
def fake_redis(settings: Any) -> Iterator[FakeRedis]:
    settings.COREBOARD_REDIS_TIMEOUT_MS = 200
    server = FakeRedis()
    yield server
    server.close()


def test_a_hung_server_costs_one_timeout_then_calls_fail_at_once(fake_redis: FakeRedis) -> None:
    client = redis_clients.for_url(fake_redis.url)
    assert client.ping()
    fake_redis.hung.set()
    began = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.get("key")
    # One timeout, not redis-py's default three retries with a backoff.
    assert 0.15 < time.monotonic() - began < 0.5
    assert not redis_clients.usable(fake_redis.url)
    sent = fake_redis.commands
    began = time.monotonic()
    for _ in range(50):
        with pytest.raises(redis_clients.BrokerUnavailable):
            client.get("key")
    assert time.monotonic() - began < 0.1
    assert fake_redis.commands == sent, "a call went out while the breaker was open"


def test_the_breaker_closes_once_the_server_answers_a_ping(fake_redis: FakeRedis) -> None:
    client = redis_clients.for_url(fake_redis.url)
    fake_redis.hung.set()
    with pytest.raises(redis.TimeoutError):
        client.get("key")
    fake_redis.hung.clear()
    deadline = time.monotonic() + 5
    while not redis_clients.usable(fake_redis.url):
        assert time.monotonic() < deadline, "the probe never closed the breaker"
        time.sleep(0.02)
    assert client.ping()


def test_a_refused_connection_opens_the_breaker_without_waiting(settings: Any) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    began = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        redis_clients.for_url(url).ping()
    assert time.monotonic() - began < 0.5
    assert not redis_clients.usable(url)


def test_broker_status_says_unavailable_while_the_broker_does_not_answer(
    fake_redis: FakeRedis, settings: Any
) -> None:
    settings.CELERY_BROKER_URL = fake_redis.url
    assert redis_clients.broker_status().available
    fake_redis.hung.set()
    with pytest.raises(redis.TimeoutError):
        redis_clients.broker().get("key")
    began = time.monotonic()
    status = redis_clients.broker_status()
    assert time.monotonic() - began < 0.05
    assert not status.available
    assert status.since is not None
    assert "broker (Redis) is not answering" in status.text


def test_broker_status_from_memory_never_asks_and_learns_from_asyncio_callers(
    fake_redis: FakeRedis, settings: Any
) -> None:
    settings.CELERY_BROKER_URL = fake_redis.url
    fake_redis.hung.set()
    sent = fake_redis.commands
    began = time.monotonic()
    assert redis_clients.broker_status(ask=False).available
    assert time.monotonic() - began < 0.05
    assert fake_redis.commands == sent
    # An asyncio caller (the publisher, a socket) whose call timed out tells the breaker.
    redis_clients.report_unanswered(fake_redis.url, TimeoutError("no reply"))
    assert not redis_clients.broker_status(ask=False).available
    assert not redis_clients.broker_usable()
