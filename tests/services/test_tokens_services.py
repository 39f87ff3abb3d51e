"""API tokens made by the services and the token_create command: expiry and keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from tests.factories import api_client_for_token as _api
from tokens import services
from tokens.models import ApiToken


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


@pytest.mark.services
@pytest.mark.django_db
def test_a_password_change_revokes_the_persons_tokens_only(alice: User, bob: User) -> None:
    """Issue 21 probe 10: tokens survived a password change."""
    services.token_create(user=alice, name="laptop")
    services.token_create(user=alice, name="ci")
    kept = services.token_create(user=bob, name="bob's")
    alice.set_password("a-new-password-2")
    alice.save()
    assert not ApiToken.objects.filter(user=alice).exists()
    assert list(ApiToken.objects.filter(user=bob)) == [kept.token]


@pytest.mark.services
@pytest.mark.django_db
def test_the_changepassword_form_and_command_revoke_tokens(alice: User) -> None:
    services.token_create(user=alice, name="laptop")
    form = SetPasswordForm(
        alice, {"new_password1": "Zq8!new-pass", "new_password2": "Zq8!new-pass"}
    )
    assert form.is_valid(), form.errors
    form.save()
    assert not ApiToken.objects.filter(user=alice).exists()
    services.token_create(user=alice, name="again")
    alice.password = make_password("assigned-in-code")
    alice.save()
    assert not ApiToken.objects.filter(user=alice).exists()


@pytest.mark.services
@pytest.mark.django_db
def test_other_saves_and_a_hash_upgrade_revoke_nothing(alice: User) -> None:
    # A salt too short for the hasher: logging in upgrades the hash (check_password's setter).
    weak = make_password("alice-password-1", salt="ab", hasher="md5")
    alice.password = weak
    alice.save()
    token = services.token_create(user=alice, name="laptop").token
    alice.first_name = "Alice"
    alice.save()
    alice.save(update_fields=["last_login"])
    assert alice.check_password("alice-password-1")
    alice.refresh_from_db()
    assert alice.password != weak  # upgraded, the same password
    assert list(ApiToken.objects.filter(user=alice)) == [token]


@pytest.mark.services
@pytest.mark.django_db
def test_revocation_on_password_change_can_be_turned_off(alice: User, settings: object) -> None:
    settings.COREBOARD_PASSWORD_CHANGE_REVOKES_TOKENS = False  # type: ignore[attr-defined]
    token = services.token_create(user=alice, name="laptop").token
    alice.set_password("a-new-password-2")
    alice.save()
    assert list(ApiToken.objects.filter(user=alice)) == [token]
