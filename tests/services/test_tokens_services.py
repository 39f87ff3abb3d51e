"""API tokens made by the services and the token_create command: expiry and keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from tests.factories import api_client_for_token as _api
from tokens import services


@pytest.mark.services
@pytest.mark.django_db
def test_default_expiry_and_never(alice: User, settings: object) -> None:
    settings.COREBOARD_TOKEN_EXPIRY_DAYS = 7  # type: ignore[attr-defined]
    default = services.token_create(user=alice, name="a").token
    assert default.expires_at is not None
    assert timedelta(days=6) < default.expires_at - timezone.now() <= timedelta(days=7)
    assert services.token_create(user=alice, name="b", expires_in_days=0).token.expires_at is None


@pytest.mark.services
@pytest.mark.django_db
def test_token_create_command_prints_a_working_key(
    alice: User, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("token_create", "alice", "--name", "ops")
    key = capsys.readouterr().out.strip()
    assert _api(key).get("/api/jobs/").status_code == 200
