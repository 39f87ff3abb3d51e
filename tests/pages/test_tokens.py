"""API tokens made and revoked in the browser, then used by the API."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tests.factories import api_client_for_token as _api
from tokens import services
from tokens.models import ApiToken

KEY = re.compile(r'id="new-token-key"[^>]*value="([^"]+)"')


def _create_in_page(client: Client, name: str, days: int = 30) -> str:
    response = client.post("/tokens/", {"name": name, "expires_in_days": days})
    assert response.status_code == 200
    match = KEY.search(response.content.decode())
    assert match, "the new key is shown once after creation"
    return match.group(1)


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
