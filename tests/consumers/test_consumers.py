"""The live sockets' consumers on Channels' in-memory layer: snapshots, deltas, gaps, resyncs,
who may listen. tests/integration/test_consumers_redis.py runs the same path over Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db.models import F

from jobs import protocol
from jobs.engine import events, workers
from jobs.models import Job
from jobs.sockets import backlog, consumers, guards
from project.asgi import application
from tests.factories import make_ended_job, make_unclaimable_job
from tests.sockets import communicator_for, session_cookie

pytestmark = [
    pytest.mark.consumers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("in_memory_channel_layer"),
]


create_job = database_sync_to_async(make_ended_job)
create_waiting_job = database_sync_to_async(make_unclaimable_job)


async def publish(job_id: int, seq: int, **fields: Any) -> None:
    event = protocol.job_changed_event(job_id=job_id, seq=seq, job=None, chunks=[])
    await get_channel_layer().group_send(events.job_group(job_id), {**event, **fields})


async def test_a_big_jobs_snapshot_is_compact_and_under_the_frame_limit(alice: User) -> None:
    job = await create_job(alice, chunks=10_000)
    await database_sync_to_async(
        lambda: job.chunks.filter(index__lt=500).update(status="failed", error="x" * 4000)
    )()
    await database_sync_to_async(lambda: job.chunks.filter(index=7).update(attempts=3))()
    communicator = await communicator_for(job.pk, alice)
    connected, _ = await communicator.connect()
    assert connected
    frames = [await communicator.receive_from(timeout=10)]
    first = json.loads(frames[0])
    assert first["type"] == "job.snapshot"
    # Every chunk's status, one byte each, whatever the job's size.
    grid = protocol.grid_unpack(first["grid"])
    assert len(grid) == 10_000
    assert grid[7] == ("failed", True)
    assert grid[499] == ("failed", False)
    assert grid[500] == ("cancelled", False)
    # Full states only for the window: here the first failing chunks, in pages.
    indexes = [c["index"] for c in first["chunks"]]
    for _ in range(first["chunk_pages"] - 1):
        frames.append(await communicator.receive_from(timeout=10))
        page = json.loads(frames[-1])
        assert page["type"] == "job.chunks"
        assert page["seq"] == first["seq"]
        indexes += [c["index"] for c in page["chunks"]]
    assert indexes == list(range(protocol.SNAPSHOT_FAILING))
    assert first["chunk_pages"] > 1
    assert max(len(frame.encode()) for frame in frames) < 512 * 1024
    await communicator.disconnect()


async def test_owner_gets_a_snapshot_then_progress(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "job.snapshot"
    assert snapshot["job"]["id"] == job.pk
    assert protocol.grid_unpack(snapshot["grid"]) == [("cancelled", False)] * 3
    assert snapshot["chunks"] == []  # none ran: no chunk's full state is needed
    await publish(
        job.pk, snapshot["seq"] + 1, chunks=[{"index": 1, "status": "running", "progress": 0.5}]
    )
    delta = await communicator.receive_json_from(timeout=5)
    assert delta["type"] == "job.progress"
    assert delta["chunks"] == [{"index": 1, "status": "running", "progress": 0.5}]
    await communicator.disconnect()


@pytest.fixture
def quick_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "SOCKET_BEAT_S", 0.2)
    monkeypatch.setattr(consumers, "GAP_GRACE_S", 0.3)


@pytest.mark.usefixtures("quick_beats")
async def test_a_gap_that_stays_open_sends_a_fresh_snapshot(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    first = await communicator.receive_json_from(timeout=5)
    await publish(job.pk, first["seq"] + 5)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "job.progress"
    # Numbers +1..+4 never come (dropped): after the grace, a snapshot repairs the page.
    assert (await communicator.receive_json_from(timeout=5))["type"] == "job.snapshot"
    await communicator.disconnect()


@pytest.mark.usefixtures("quick_beats")
async def test_a_socket_whose_events_stopped_resyncs_from_the_database(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    first = await communicator.receive_json_from(timeout=5)
    # The job changes but no event reaches the socket (Redis lost the group, say).
    await database_sync_to_async(
        lambda: Job.objects.filter(pk=job.pk).update(version=F("version") + 1, status="failed")
    )()
    resync = await communicator.receive_json_from(timeout=5)
    assert resync["type"] == "job.snapshot"
    assert resync["job"]["version"] == first["job"]["version"] + 1
    assert resync["job"]["status"] == "failed"
    await communicator.disconnect()


@pytest.mark.usefixtures("quick_beats")
async def test_late_deltas_are_not_lost_and_resync_no_one(alice: User) -> None:
    """A daphne that falls behind relays a busy job's deltas late, and the job's version
    in the database is always ahead of them: that is no reason to resync (every page of
    the job doing so buried daphne further, issue 20); silence is."""
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    first = await communicator.receive_json_from(timeout=5)
    await database_sync_to_async(
        lambda: Job.objects.filter(pk=job.pk).update(version=F("version") + 1)
    )()
    seq = first["seq"]

    async def deltas() -> None:
        # Deltas keep coming for many beats (0.2 s), none with the newer version yet.
        for n in range(1, 21):
            await publish(job.pk, seq + n, chunks=[{"index": 0, "progress": n / 20}])
            await asyncio.sleep(0.1)

    sending = asyncio.ensure_future(deltas())
    while not sending.done():
        if not await communicator.receive_nothing(timeout=0.05):
            received = await communicator.receive_json_from(timeout=5)
            assert received["type"] in {"job.progress", "job.live"}, received
    # Then nothing comes: the change stored beats ago was lost, and the socket resyncs.
    while (received := await communicator.receive_json_from(timeout=5))["type"] != "job.snapshot":
        assert received["type"] in {"job.progress", "job.live"}, received
    assert received["type"] == "job.snapshot"
    assert received["job"]["version"] == first["job"]["version"] + 1
    await communicator.disconnect()


async def test_stale_events_are_dropped(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    snapshot = await communicator.receive_json_from(timeout=5)
    await publish(job.pk, snapshot["seq"])  # not newer than the snapshot
    await publish(job.pk, snapshot["seq"] + 1, chunks=[{"index": 0, "status": "running"}])
    delta = await communicator.receive_json_from(timeout=5)
    assert delta["seq"] == snapshot["seq"] + 1
    await communicator.disconnect()


async def test_resync_request_and_bad_messages(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"type": "resync"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "job.snapshot"
    await communicator.send_to(text_data="not json")
    assert "not valid JSON" in (await communicator.receive_json_from(timeout=5))["error"]
    await communicator.send_json_to({"type": "delete-everything"})
    assert '"type" must be "resync"' in (await communicator.receive_json_from(timeout=5))["error"]
    await communicator.send_to(text_data="x" * 5000)
    assert "at most 1024 bytes" in (await communicator.receive_json_from(timeout=5))["error"]
    await communicator.disconnect()


async def test_another_users_job_closes_with_not_found(alice: User, mallory: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, mallory)
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}


async def test_anonymous_socket_is_closed(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, None)
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def test_foreign_origin_is_rejected(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice, origin=b"http://evil.example")
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.usefixtures("quick_beats")
async def test_out_of_order_deltas_are_all_relayed_without_a_snapshot(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    snapshot = await communicator.receive_json_from(timeout=5)
    # Two worker processes numbered their events n+1 and n+2 but sent them the other way
    # round; each carries a different chunk, so both must reach the page.
    await publish(job.pk, snapshot["seq"] + 2, chunks=[{"index": 1, "status": "cancelled"}])
    await publish(job.pk, snapshot["seq"] + 1, chunks=[{"index": 0, "status": "cancelled"}])
    received = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert [m["type"] for m in received] == ["job.progress", "job.progress"]
    assert [m["chunks"][0]["index"] for m in received] == [1, 0]
    assert await communicator.receive_nothing(timeout=1)  # several beats: no snapshot
    await communicator.disconnect()


async def test_overview_pushes_my_jobs_and_the_cluster(alice: User, mallory: User) -> None:
    mine = await create_waiting_job(alice)
    theirs = await create_waiting_job(mallory)
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", await session_cookie(alice)),
    ]
    communicator = WebsocketCommunicator(application, "/ws/overview/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "overview.state"
    assert [job["id"] for job in first["active"]] == [mine.pk]
    assert theirs.pk not in [job["id"] for job in first["active"] + first["recent"]]
    assert set(first["cluster"]) == {"now", "web", "nodes", "processes", "throughput"}
    second = await communicator.receive_json_from(timeout=5)  # pushed again a second later
    assert second["cluster"]["now"] > first["cluster"]["now"]
    # A node that joins, leaves or drains is pushed at once, not at the next tick.
    told_at = time.monotonic()
    await get_channel_layer().group_send(workers.CLUSTER_GROUP, {"type": "cluster.changed"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "overview.state"
    assert time.monotonic() - told_at < 0.7
    await communicator.send_to(text_data='{"type": "resync"}')
    while (reply := await communicator.receive_json_from(timeout=5))["type"] != "error":
        assert reply["type"] == "overview.state"
    assert "takes no messages" in reply["error"]
    await communicator.disconnect()


async def test_overview_refuses_anonymous_sockets() -> None:
    communicator = WebsocketCommunicator(
        application,
        "/ws/overview/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def test_a_client_that_stops_reading_gets_no_deltas_then_one_snapshot(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the backlog bound, a socket skips deltas and leaves the job's group; once its
    client has read what it was sent, it joins again with a fresh snapshot."""
    monkeypatch.setattr(guards, "BEHIND_AFTER_S", 0)
    monkeypatch.setattr(guards, "PULSE_S", 0.05)
    unread = [0]  # what daphne would say the client has not taken

    async def with_probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await application({**scope, backlog.SCOPE_KEY: lambda: unread[0]}, receive, send)

    job = await create_job(alice)
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    headers.append((b"cookie", await session_cookie(alice)))
    socket = WebsocketCommunicator(with_probe, f"/ws/jobs/{job.pk}/", headers=headers)
    assert (await socket.connect())[0]
    seq = (await socket.receive_json_from(timeout=5))["seq"]
    layer = get_channel_layer()
    group = events.job_group(job.pk)
    assert len(layer.groups[group]) == 1

    unread[0] = 10 * 1024 * 1024
    await publish(job.pk, seq + 1, chunks=[{"index": 0, "status": "done"}])
    assert await socket.receive_nothing(timeout=0.5)
    assert not layer.groups.get(group)  # nothing more comes to it through the layer

    unread[0] = 0
    assert (await socket.receive_json_from(timeout=5))["type"] == "job.snapshot"
    assert len(layer.groups[group]) == 1
    await publish(job.pk, seq + 2, chunks=[{"index": 1, "status": "done"}])
    assert (await socket.receive_json_from(timeout=5))["seq"] == seq + 2
    await socket.disconnect()
