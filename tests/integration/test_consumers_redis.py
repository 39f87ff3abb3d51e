"""The job socket over the real Redis channel layer, the one daphne uses in production.

tests/consumers/test_consumers.py covers the consumer's logic on Channels' in-memory layer; this is
the path through Redis, kept as an integration test because it must idle in real time.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.contrib.auth.models import User

from jobs import protocol
from jobs.engine import events
from jobs.sockets import guards
from launcher import stack
from project.asgi import application
from tests.factories import make_ended_job
from tests.sockets import (
    communicator_for,
    kill_channel_layer_clients,
    receive_update,
    session_cookie,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# redis-py 8 gives every connection a 5 s socket timeout, the same as channels-redis'
# blocking read of a channel: an idle consumer then died with TimeoutError (close 1011)
# after about 5 s, so settings.CHANNEL_LAYERS sets a longer one. Idling for twice that
# shows the fix holds; no event can stand in for the time passing.
IDLE_S = 11
# A hung Redis is noticed by the next ping (every 1 s, 2 s deadline): the page says so
# within a few seconds; it is live again within the 10 s of Redis answering.
PAUSE_NOTICED_S = 5
RECOVERY_S = 10


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
        assert await asyncio.to_thread(kill_channel_layer_clients) > 0
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


@pytest.fixture
def private_layer(tmp_path: Path, settings: Any) -> Iterator[stack.EmbeddedRedis]:
    """A Redis of this test's own as the channel layer (the test stops and resumes it)."""
    server = stack.EmbeddedRedis(root=tmp_path / "redis", port=stack.free_port(), persist=False)
    server.start()
    url = server.url(db=1)
    settings.CHANNEL_LAYER_REDIS_URL = url
    config = copy.deepcopy(settings.CHANNEL_LAYERS)
    config["default"]["CONFIG"]["hosts"][0]["address"] = url
    settings.CHANNEL_LAYERS = config
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    try:
        yield server
    finally:
        assert server.process is not None
        server.process.send_signal(signal.SIGCONT)
        server.stop()
        channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


async def _until(socket: WebsocketCommunicator, wanted: Mapping[str, Any], within: float) -> float:
    """Seconds until the socket sends `wanted` (other messages may come first)."""
    started = time.monotonic()
    while (await socket.receive_json_from(timeout=within)) != wanted:
        assert time.monotonic() - started < within, f"no {wanted} within {within} s"
    return time.monotonic() - started


async def test_a_hung_redis_pauses_the_pages_and_they_resume_by_themselves(
    alice: User, private_layer: stack.EmbeddedRedis
) -> None:
    assert private_layer.process is not None
    job = await database_sync_to_async(make_ended_job)(alice)
    page, seq = await _snapshot_socket(job.pk, alice)
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    headers.append((b"cookie", await session_cookie(alice)))
    overview = WebsocketCommunicator(application, "/ws/overview/", headers=headers)
    assert (await overview.connect())[0]
    assert (await overview.receive_json_from(timeout=10))["type"] == "overview.state"

    private_layer.process.send_signal(signal.SIGSTOP)
    paused = protocol.broker_state_message(available=False)
    noticed_s = await _until(page, paused, within=PAUSE_NOTICED_S)
    await _until(overview, paused, within=PAUSE_NOTICED_S)
    # While it hangs, the page is told again (the heartbeat), never "live".
    assert await _until(page, paused, within=10) > 0

    private_layer.process.send_signal(signal.SIGCONT)
    resumed_at = time.monotonic()
    resumed = protocol.broker_state_message(available=True)
    snapshot = await receive_update(page, timeout=RECOVERY_S)
    assert snapshot["type"] == "job.snapshot"  # the resync comes before "live"
    await _until(page, resumed, within=RECOVERY_S)
    resumed_s = time.monotonic() - resumed_at
    await _until(overview, resumed, within=RECOVERY_S)
    # Then its state afresh; the broker's heartbeat (the same "live") may come first.
    while (message := await overview.receive_json_from(timeout=RECOVERY_S)) == resumed:
        assert time.monotonic() - resumed_at < 2 * RECOVERY_S, "no overview.state after resuming"
    assert message["type"] == "overview.state"
    await publish(job.pk, seq + 1, chunks=[{"index": 0, "status": "done"}])
    assert (await receive_update(page, timeout=5))["seq"] == seq + 1
    print(f"paused noticed after {noticed_s:.2f} s; live again {resumed_s:.2f} s after SIGCONT")
    await page.disconnect()
    await overview.disconnect()
    assert guards.open_sockets(alice.pk) == 0


async def test_a_redis_killed_and_restarted_pauses_the_pages_until_it_is_back(
    alice: User, private_layer: stack.EmbeddedRedis
) -> None:
    assert private_layer.process is not None
    job = await database_sync_to_async(make_ended_job)(alice)
    page, seq = await _snapshot_socket(job.pk, alice)
    private_layer.process.send_signal(signal.SIGKILL)
    private_layer.process.wait()
    private_layer.process = None
    await _until(page, protocol.broker_state_message(available=False), within=PAUSE_NOTICED_S)
    await asyncio.to_thread(private_layer.start)
    back_at = time.monotonic()
    resynced = await receive_update(page, timeout=RECOVERY_S)
    assert resynced["type"] == "job.snapshot"
    await _until(page, protocol.broker_state_message(available=True), within=RECOVERY_S)
    # A Redis without its data lost the group: the socket joined it again. It lost the
    # job's seq too: the snapshot's is the counter started again (events._SEQ_BASE).
    seq = resynced["seq"]
    await publish(job.pk, seq + 1, chunks=[{"index": 0, "status": "done"}])
    await _hears(page, seq + 1)
    print(f"live again {time.monotonic() - back_at:.2f} s after Redis was back")
    await page.disconnect()
    assert guards.open_sockets(alice.pk) == 0
