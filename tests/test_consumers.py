from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from jobs import consumers, events, services
from jobs.models import Job
from project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs here only feed the consumer: keep a live worker (if any) from running them."""
    monkeypatch.setattr(services, "job_dispatch", lambda *, job_id: None)


@database_sync_to_async
def session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@database_sync_to_async
def create_job(owner: User) -> Job:
    return services.job_create(owner=owner, kind="burn", params={"chunks": 3, "ms": 1})


async def communicator_for(
    job_id: int, user: User | None, origin: bytes = b"http://127.0.0.1"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await session_cookie(user)))
    return WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)


async def publish(job_id: int, seq: int, **fields: Any) -> None:
    await get_channel_layer().group_send(
        events.job_group(job_id),
        {"type": "job.progress", "job_id": job_id, "seq": seq, "job": None, "chunks": [], **fields},
    )


async def test_owner_gets_a_snapshot_then_progress(alice: User) -> None:
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "job.snapshot"
    assert snapshot["job"]["id"] == job.pk
    assert [c["index"] for c in snapshot["chunks"]] == [0, 1, 2]
    await publish(
        job.pk, snapshot["seq"] + 1, chunks=[{"index": 1, "status": "running", "progress": 0.5}]
    )
    delta = await communicator.receive_json_from(timeout=5)
    assert delta["type"] == "job.progress"
    assert delta["chunks"] == [{"index": 1, "status": "running", "progress": 0.5}]
    await communicator.disconnect()


async def test_a_gap_in_sequence_numbers_sends_a_fresh_snapshot(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "MIN_RESYNC_INTERVAL_S", 0)
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    first = await communicator.receive_json_from(timeout=5)
    await publish(job.pk, first["seq"] + 5)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "job.snapshot"
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


async def test_idle_socket_still_receives_after_ten_seconds(alice: User) -> None:
    # redis-py's default 5 s socket timeout used to kill idle consumers (see DESIGN.md).
    job = await create_job(alice)
    communicator = await communicator_for(job.pk, alice)
    await communicator.connect()
    snapshot = await communicator.receive_json_from(timeout=5)
    await asyncio.sleep(11)
    await publish(job.pk, snapshot["seq"] + 1, chunks=[{"index": 2, "status": "done"}])
    delta = await communicator.receive_json_from(timeout=5)
    assert delta["chunks"] == [{"index": 2, "status": "done"}]
    await communicator.disconnect()


async def test_out_of_order_deltas_are_all_relayed(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "MIN_RESYNC_INTERVAL_S", 3600)  # relay, do not resync
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
    await communicator.disconnect()


async def test_overview_pushes_my_jobs_and_the_cluster(alice: User, mallory: User) -> None:
    mine = await create_job(alice)
    theirs = await create_job(mallory)
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
    assert set(first["cluster"]) == {"now", "nodes", "processes", "throughput"}
    second = await communicator.receive_json_from(timeout=5)  # pushed again a second later
    assert second["cluster"]["now"] > first["cluster"]["now"]
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
