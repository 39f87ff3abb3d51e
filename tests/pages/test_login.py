"""Login throttling (django-axes, per username) on both login forms."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = [pytest.mark.pages, pytest.mark.django_db]

WINDOW_S = 2


@pytest.fixture(autouse=True)
def _short_window(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(seconds=WINDOW_S)


def log_in(client: Client, password: str, path: str = "/accounts/login/") -> int:
    response = client.post(path, {"username": "alice", "password": password})
    return response.status_code


def test_after_n_failures_the_form_is_throttled_and_the_right_password_works_after(
    alice: User,
) -> None:
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    assert [log_in(attacker, "wrong") for _ in range(3)] == [200, 200, 429]
    locked = attacker.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    # The lockout is per username: the right password from elsewhere waits for the window.
    alice_browser = Client(REMOTE_ADDR="198.51.100.7")
    began = time.monotonic()
    assert log_in(alice_browser, "alice-password-1") == 429
    time.sleep(max(0.0, began + WINDOW_S + 0.2 - time.monotonic()))
    assert log_in(alice_browser, "alice-password-1") == 302
    assert alice_browser.get("/").status_code == 200


def test_the_admin_login_form_is_throttled_too(staff: User) -> None:
    client = Client()
    statuses = [
        client.post("/admin/login/", {"username": "sam", "password": "nope"}).status_code
        for _ in range(4)
    ]
    assert statuses[-1] == 429
    assert (
        client.post("/admin/login/", {"username": "sam", "password": "sam-password-1"}).status_code
        == 429
    )


def test_a_success_resets_the_count(alice: User) -> None:
    client = Client()
    assert [log_in(client, "wrong") for _ in range(2)] == [200, 200]
    assert log_in(client, "alice-password-1") == 302
    other = Client()
    assert [log_in(other, "wrong") for _ in range(2)] == [200, 200]
