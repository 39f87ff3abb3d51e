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
from tests.sockets import communicator_for, receive_update

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# redis-py 8 gives every connection a 5 s socket timeout, the same as channels-redis'
# blocking read of a channel: an idle consumer then died with TimeoutError (close 1011)
# after about 5 s, so settings.CHANNEL_LAYERS sets a longer one. Idling for twice that
# shows the fix holds; no event can stand in for the time passing.
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
    delta = await receive_update(communicator, timeout=5)
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
    """A live job socket, connected as a page does, with its snapshot's seq."""
    communicator = await communicator_for(job_id, user)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await receive_update(communicator, timeout=5)
    assert snapshot["type"] == "job.snapshot"
    return communicator, snapshot["seq"]


async def _resynced(socket: WebsocketCommunicator) -> int:
    """After a drop the socket stays open and sends a fresh snapshot (the connection may
    have taken messages with it); its seq."""
    while True:
        message = await socket.receive_json_from(timeout=10)
        if message["type"] == "job.snapshot":
            return int(message["seq"])
        assert message["type"] == "broker.state", message


async def _hears(socket: WebsocketCommunicator, seq: int) -> None:
    """The socket relays delta `seq` (after any snapshots that were on their way)."""
    while True:
        message = await receive_update(socket, timeout=10)
        if message["type"] == "job.progress":
            assert message["seq"] == seq
            return
        assert message["type"] in {"job.snapshot", "broker.state"}, message


async def test_sockets_live_through_two_redis_connection_drops_and_the_count_stays_exact(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_MAX_SOCKETS_PER_USER = 3
    job = await database_sync_to_async(make_ended_job)(alice)
    sockets = [await _snapshot_socket(job.pk, alice) for _ in range(3)]
    assert guards.open_sockets(alice.pk) == 3
    seq = max(seq for _, seq in sockets)
    for _drop in range(2):
        assert await asyncio.to_thread(_kill_channel_layer_clients) > 0
        for socket, _ in sockets:
            seq = max(seq, await _resynced(socket))
        # Each socket hears the next change.
        seq += 1
        await publish(job.pk, seq, chunks=[{"index": 0, "status": "done"}])
        for socket, _ in sockets:
            await _hears(socket, seq)
        assert guards.open_sockets(alice.pk) == 3
    # The count is exact: a fourth page is refused at the cap of three...
    refused = await communicator_for(job.pk, alice)
    assert (await refused.connect())[0]
    assert (await refused.receive_json_from(timeout=5))["type"] == "error"
    assert (await refused.receive_output(timeout=5))["code"] == protocol.CLOSE_TOO_MANY_SOCKETS
    # ...and accepted once one closes.
    await sockets[0][0].disconnect()
    assert guards.open_sockets(alice.pk) == 2
    replacement, _ = await _snapshot_socket(job.pk, alice)
    for socket in [replacement, *(socket for socket, _ in sockets[1:])]:
        await socket.disconnect()
    assert guards.open_sockets(alice.pk) == 0
