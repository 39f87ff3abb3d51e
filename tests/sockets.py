"""Websocket clients for tests: a job's live socket as a logged-in person sees it."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis
from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from project.asgi import application

P = ParamSpec("P")
JOB_STATE_TYPES = frozenset({"job.snapshot", "job.progress"})
R = TypeVar("R")


def db_sync_to_async(function: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """channels' `database_sync_to_async` (which closes the thread's stale database
    connections around the call) with its types: channels ships none."""
    wrapped: Callable[P, Coroutine[Any, Any, R]] = database_sync_to_async(function)
    return wrapped


@db_sync_to_async
def session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def communicator_for(
    job_id: int, user: User | None, origin: bytes = b"http://127.0.0.1"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await session_cookie(user)))
    return WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)


async def receive_update(communicator: WebsocketCommunicator, timeout: float) -> dict[str, Any]:
    """The socket's next message other than a heartbeat (`broker.state` saying the broker
    answers, sent on a socket that has been quiet for a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = await communicator.receive_json_from(
            timeout=max(0.01, deadline - time.monotonic())
        )
        if message != {"type": "broker.state", "available": True}:
            return message


def follow_job(
    job_id: int, user: User, *, until: set[str], timeout: float = 90
) -> list[tuple[float, dict[str, Any]]]:
    """Every message of a job's socket (with the time.time() it came) until one carries
    a job state in `until`."""

    async def follow() -> list[tuple[float, dict[str, Any]]]:
        # This call's event loop is new: so must the consumer's channel layer be.
        channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
        communicator = await communicator_for(job_id, user)
        connected, _ = await communicator.connect()
        assert connected
        deadline = time.monotonic() + timeout
        messages: list[tuple[float, dict[str, Any]]] = []
        while True:
            message = await communicator.receive_json_from(timeout=deadline - time.monotonic())
            messages.append((time.time(), message))
            # Only snapshots and deltas carry a job state (`chunk.output` and
            # `job.resources` carry the job's id).
            state = message.get("job") if message["type"] in JOB_STATE_TYPES else None
            if (state or {}).get("status") in until:
                break
        await communicator.disconnect()
        return messages

    return async_to_sync(follow)()


def kill_channel_layer_clients() -> int:
    """What a Redis restart or `CLIENT KILL TYPE normal` does to daphne's connections (and
    to every other normal client of that Redis server); how many were killed."""
    conn = redis.Redis.from_url(settings.CHANNEL_LAYER_REDIS_URL)
    try:
        return int(conn.client_kill_filter(_type="normal", skipme=True))
    finally:
        conn.close()
