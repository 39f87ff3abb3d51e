"""API tokens made and revoked in the browser, used by the API and the websocket."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from project.asgi import application
from tests.factories import make_ended_job
from tokens import services
from tokens.models import ApiToken

KEY = re.compile(r'id="new-token-key"[^>]*value="([^"]+)"')


def _create_in_page(client: Client, name: str, days: int = 30) -> str:
    response = client.post("/tokens/", {"name": name, "expires_in_days": days})
    assert response.status_code == 200
    match = KEY.search(response.content.decode())
    assert match, "the new key is shown once after creation"
    return match.group(1)


def _api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.pages
@pytest.mark.django_db
def test_token_made_in_the_page_works_until_revoked(alice: User, alice_client: Client) -> None:
    key = _create_in_page(alice_client, "laptop")
    token = ApiToken.objects.get(user=alice)
    assert token.name == "laptop"
    assert token.digest != key
    assert key not in token.digest
    assert token.last_used_at is None

    before = timezone.now()
    assert _api(key).get("/api/jobs/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert before <= token.last_used_at <= timezone.now()
    page = alice_client.get("/tokens/").content.decode()
    assert "laptop" in page
    assert token.prefix in page
    assert key not in page

    response = alice_client.post(f"/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    assert _api(key).get("/api/jobs/").status_code == 401
    assert not ApiToken.objects.exists()


@pytest.mark.pages
@pytest.mark.django_db
def test_bad_token_form_names_the_field_and_creates_nothing(alice_client: Client) -> None:
    response = alice_client.post("/tokens/", {"name": "", "expires_in_days": -1})
    assert response.status_code == 400
    page = response.content.decode()
    assert "This field is required" in page
    assert "greater than or equal to 0" in page
    assert not ApiToken.objects.exists()


@pytest.mark.api
@pytest.mark.django_db
def test_expired_token_is_refused(alice: User) -> None:
    new = services.token_create(user=alice, name="old", expires_in_days=1)
    ApiToken.objects.filter(pk=new.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert _api(new.key).get("/api/jobs/").status_code == 401


@pytest.mark.services
@pytest.mark.django_db
def test_default_expiry_and_never(alice: User, settings: object) -> None:
    settings.COREBOARD_TOKEN_EXPIRY_DAYS = 7  # type: ignore[attr-defined]
    default = services.token_create(user=alice, name="a").token
    assert default.expires_at is not None
    assert timedelta(days=6) < default.expires_at - timezone.now() <= timedelta(days=7)
    assert services.token_create(user=alice, name="b", expires_in_days=0).token.expires_at is None


@pytest.mark.pages
@pytest.mark.django_db
def test_nobody_else_sees_or_revokes_my_tokens(
    alice: User, mallory_client: Client, staff_client: Client
) -> None:
    new = services.token_create(user=alice, name="alice-ci")
    assert "alice-ci" not in mallory_client.get("/tokens/").content.decode()
    assert mallory_client.post(f"/tokens/{new.token.pk}/revoke/").status_code == 404
    assert _api(new.key).get("/api/jobs/").status_code == 200

    page = staff_client.get("/tokens/").content.decode()
    assert "alice-ci" in page
    assert "alice" in page
    assert staff_client.post(f"/tokens/{new.token.pk}/revoke/").status_code == 302
    assert _api(new.key).get("/api/jobs/").status_code == 401


@pytest.mark.pages
@pytest.mark.django_db
def test_page_needs_login() -> None:
    response = Client().get("/tokens/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.services
@pytest.mark.django_db
def test_token_create_command_prints_a_working_key(
    alice: User, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("token_create", "alice", "--name", "ops")
    key = capsys.readouterr().out.strip()
    assert _api(key).get("/api/jobs/").status_code == 200


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
