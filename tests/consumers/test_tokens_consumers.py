"""API tokens open the job websocket (an Authorization header, as the CLI sends)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from project.asgi import application
from tests.factories import make_ended_job
from tokens import services


@pytest.mark.consumers
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_memory_channel_layer")
async def test_websocket_accepts_a_token_header(alice: User) -> None:
    # database_sync_to_async closes the connection its thread opened (plain sync_to_async
    # would keep it, and the test database could not be dropped at the end).
    job = await database_sync_to_async(make_ended_job)(alice)
    new = await database_sync_to_async(services.token_create)(user=alice, name="cli")
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(
        application,
        f"/ws/jobs/{job.pk}/",
        headers=[*headers, (b"authorization", f"Token {new.key}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "job.snapshot"
    await communicator.disconnect()

    refused = WebsocketCommunicator(
        application, f"/ws/jobs/{job.pk}/", headers=[*headers, (b"authorization", b"Token nope")]
    )
    await refused.connect()
    assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
