"""The job socket over the real Redis channel layer, the one daphne uses in production.

tests/consumers/test_consumers.py covers the consumer's logic on Channels' in-memory layer; this is
the path through Redis, kept as an integration test because it must idle in real time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.contrib.auth.models import User

from jobs import protocol
from jobs.engine import events
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
