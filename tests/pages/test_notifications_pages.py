"""The notifications page through Django's test client: bad input names its field and
changes nothing, a hook's secret is shown once, another person's hooks do not exist."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import NotificationDelivery, NotificationSettings, Webhook

pytestmark = [pytest.mark.pages, pytest.mark.django_db]

SAVE = {"save": "1", "on_failed": "on", "min_minutes": "0", "email": ""}


def test_the_page_needs_a_login_and_is_in_the_navigation(alice_client: Client) -> None:
    assert Client().get("/notifications/").status_code == 302
    page = alice_client.get("/").content.decode()
    assert 'href="/notifications/"' in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_minutes", "-1", "greater than or equal to 0"),
        ("min_minutes", "99999999", "less than or equal to 10080"),
        ("email", "nope", "valid email"),
    ],
)
def test_bad_settings_name_the_field_and_change_nothing(
    alice_client: Client, field: str, value: str, message: str
) -> None:
    answer = alice_client.post("/notifications/", {**SAVE, field: value})
    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert not NotificationSettings.objects.exists()


def test_settings_are_saved(alice_client: Client, alice: User) -> None:
    answer = alice_client.post(
        "/notifications/", {**SAVE, "on_cancelled": "on", "min_minutes": "10"}
    )
    assert answer.status_code == 302
    prefs = NotificationSettings.objects.get(owner=alice)
    assert (prefs.on_succeeded, prefs.on_failed, prefs.on_cancelled) == (False, True, True)
    assert prefs.min_minutes == 10


def test_a_private_hook_url_is_refused_naming_the_setting(alice_client: Client) -> None:
    answer = alice_client.post("/notifications/", {"add_hook": "1", "url": "http://10.0.0.7/h"})
    assert answer.status_code == 400
    assert "COREBOARD_WEBHOOK_ALLOW_PRIVATE" in answer.content.decode()
    assert not Webhook.objects.exists()


def test_the_secret_is_shown_once(alice_client: Client, alice: User) -> None:
    answer = alice_client.post(
        "/notifications/", {"add_hook": "1", "url": "https://93.184.216.34/hook"}
    )
    hook = Webhook.objects.get(owner=alice)
    assert answer.status_code == 200
    assert answer["Cache-Control"] == "no-store"
    assert hook.secret in answer.content.decode()
    assert hook.secret not in alice_client.get("/notifications/").content.decode()


def test_another_persons_hook_does_not_exist_for_you(
    alice: User, mallory_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    hook = Webhook.objects.create(owner=alice, url="https://93.184.216.34/h", secret="x")
    for action in ("test", "delete"):
        assert mallory_client.post(f"/notifications/hooks/{hook.pk}/{action}/").status_code == 404
    assert "93.184.216.34" not in mallory_client.get("/notifications/").content.decode()
    assert Webhook.objects.filter(pk=hook.pk).exists()
    assert not NotificationDelivery.objects.exists()
    assert mallory_client.get(f"/notifications/hooks/{hook.pk}/test/").status_code in (404, 405)
