"""The job socket over the real Redis channel layer, the one daphne uses in production.

tests/consumers/test_consumers.py covers the consumer's logic on Channels' in-memory layer; this is
the path through Redis, kept as an integration test because it must idle in real time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.contrib.auth.models import User

from jobs import protocol
from jobs.engine import events
from jobs.sockets import guards
from tests.factories import make_ended_job
from tests.sockets import communicator_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# redis-py 8 gives every connection a 5 s socket timeout, the same as channels-redis'
# blocking read of a channel: an idle consumer then died with TimeoutError (close 1011)
# after about 5 s, so settings.CHANNEL_LAYERS sets socket_timeout=None. Idling for twice
# that shows the fix holds; no event can stand in for the time passing.
IDLE_S = 11


async def publish(job_id: int, seq: int, **fields: Any) -> None:
    event = protocol.job_changed_event(job_id=job_id, seq=seq, job=None, chunks=[])
    await get_channel_layer().group_send(events.job_group(job_id), {**event, **fields})


async def test_idle_socket_still_receives_after_ten_seconds(alice: User) -> None:
    assert isinstance(get_channel_layer(), RedisChannelLayer)
    job = await database_sync_to_async(make_ended_job)(alice)
    communicator = await communicator_for(job.pk, alice)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "job.snapshot"
    await asyncio.sleep(IDLE_S)
    await publish(job.pk, snapshot["seq"] + 1, chunks=[{"index": 2, "status": "done"}])
    delta = await communicator.receive_json_from(timeout=5)
    assert delta == {
        "type": "job.progress",
        "seq": snapshot["seq"] + 1,
        "job": None,
        "chunks": [{"index": 2, "status": "done"}],
    }
    await communicator.disconnect()


def _kill_channel_layer_clients() -> int:
    """What a Redis restart or `CLIENT KILL TYPE normal` does to daphne's connections."""
    conn = redis.Redis.from_url(settings.CHANNEL_LAYER_REDIS_URL)
    try:
        return int(conn.client_kill_filter(_type="normal", skipme=True))
    finally:
        conn.close()


async def _snapshot_socket(job_id: int, user: User) -> tuple[WebsocketCommunicator, int]:
    """A live job socket, connected as a page does: again after a failed try (right after
    a drop, the layer's pooled connection may still be the dead one; issue 19)."""
    for _try in range(3):
        communicator = await communicator_for(job_id, user)
        connected, _ = await communicator.connect()
        assert connected
        try:
            snapshot = await communicator.receive_json_from(timeout=5)
        except redis.ConnectionError:
            continue
        assert snapshot["type"] == "job.snapshot"
        return communicator, snapshot["seq"]
    raise AssertionError("no live socket after three tries")


async def _ended_by_the_drop(socket: WebsocketCommunicator) -> None:
    """The socket's consumer dies of the dropped connection (no websocket_disconnect comes),
    or its live loop closes the socket, which daphne follows with a disconnect."""
    try:
        closed = await socket.receive_output(timeout=10)
    except redis.ConnectionError:
        return
    assert closed["type"] == "websocket.close", closed
    await socket.disconnect()


async def test_a_socket_that_dies_with_its_redis_connection_leaves_its_persons_count(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_MAX_SOCKETS_PER_USER = 1
    job = await database_sync_to_async(make_ended_job)(alice)
    for _drop in range(2):
        socket, _seq = await _snapshot_socket(job.pk, alice)
        assert guards.open_sockets(alice.pk) == 1
        assert await asyncio.to_thread(_kill_channel_layer_clients) > 0
        await _ended_by_the_drop(socket)
        assert guards.open_sockets(alice.pk) == 0
    # At the cap of one, the person's page connects again, and it is live.
    socket, seq = await _snapshot_socket(job.pk, alice)
    await publish(job.pk, seq + 1, chunks=[{"index": 0, "status": "done"}])
    assert (await socket.receive_json_from(timeout=5))["type"] == "job.progress"
    await socket.disconnect()
    assert guards.open_sockets(alice.pk) == 0
