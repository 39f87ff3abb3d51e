"""Redis clients for worker threads: one per URL and process (a prefork child must not use
the connection pool it inherited from its parent)."""

from __future__ import annotations

import os

import redis
from django.conf import settings

_clients: dict[tuple[int, str], redis.Redis] = {}


def for_url(url: str) -> redis.Redis:
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    return client


def broker() -> redis.Redis:
    """A client on the broker's database: the messages, the slot registry and the worker
    registry (jobs.engine.workers says why they share it)."""
    return for_url(settings.CELERY_BROKER_URL)
