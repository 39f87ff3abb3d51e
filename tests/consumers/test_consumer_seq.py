"""A job socket and a sequence counter that jumps: re-based after Redis lost it (far above
what the socket saw) or restored from an older copy (far below). Either way the socket
sends a fresh snapshot at once, and counts on from it."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import User

from jobs import protocol
from jobs.engine import events, redis_clients
from jobs.sockets import consumers
from tests.factories import make_ended_job
from tests.sockets import communicator_for

pytestmark = [
    pytest.mark.consumers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("in_memory_channel_layer"),
]

create_job = database_sync_to_async(make_ended_job)


async def publish(job_id: int, seq: int, **fields: Any) -> None:
    event = protocol.job_changed_event(job_id=job_id, seq=seq, job=None, chunks=[])
    await get_channel_layer().group_send(events.job_group(job_id), {**event, **fields})


def counter_set(job_id: int, value: int | None) -> None:
    client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
    if value is None:
        client.delete(events.seq_key(job_id))
    else:
        client.set(events.seq_key(job_id), value)


async def test_a_re_based_counter_resyncs_the_socket_at_once(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    first = await communicator.receive_json_from(timeout=5)
    await database_sync_to_async(counter_set)(job.pk, None)  # FLUSHALL
    jumped = first["seq"] + consumers.MAX_TRACKED_GAP + 10**9
    await database_sync_to_async(counter_set)(job.pk, jumped)
    await publish(job.pk, jumped)
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "job.snapshot"
    assert snapshot["seq"] == jumped
    await publish(job.pk, jumped + 1, chunks=[{"index": 0, "status": "running"}])
    delta = await communicator.receive_json_from(timeout=5)
    assert (delta["type"], delta["seq"]) == ("job.progress", jumped + 1)
    await communicator.disconnect()


@pytest.fixture
def quick_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "SOCKET_BEAT_S", 0.2)
    monkeypatch.setattr(consumers, "GAP_GRACE_S", 0.3)


@pytest.mark.usefixtures("quick_beats")
async def test_a_counter_that_went_back_resyncs_the_socket_and_counts_on(alice: User) -> None:
    job = await create_job(alice)
    await database_sync_to_async(counter_set)(job.pk, 50_000)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    first = await communicator.receive_json_from(timeout=5)
    assert first["seq"] == 50_000
    # Restored from an older copy: far below what the socket saw.
    await database_sync_to_async(counter_set)(job.pk, 10)
    await publish(job.pk, 10)
    snapshot = await communicator.receive_json_from(timeout=5)
    assert (snapshot["type"], snapshot["seq"]) == ("job.snapshot", 10)
    # Gaps are counted from there on: 11 never comes, and a snapshot repairs the page.
    await publish(job.pk, 12, chunks=[{"index": 0, "status": "running"}])
    delta = await communicator.receive_json_from(timeout=5)
    assert (delta["type"], delta["seq"]) == ("job.progress", 12)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "job.snapshot"
    await communicator.disconnect()
