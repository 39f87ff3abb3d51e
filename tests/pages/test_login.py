"""Login throttling (django-axes, per username and address, plus per address) on both
login forms."""

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
    alice_browser = Client(REMOTE_ADDR="198.51.100.7")
    assert [log_in(alice_browser, "wrong") for _ in range(3)] == [200, 200, 429]
    locked = alice_browser.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    # The right password from the address that failed waits for the window.
    began = time.monotonic()
    assert log_in(alice_browser, "alice-password-1") == 429
    time.sleep(max(0.0, began + WINDOW_S + 0.2 - time.monotonic()))
    assert log_in(alice_browser, "alice-password-1") == 302
    assert alice_browser.get("/").status_code == 200


def test_a_stranger_elsewhere_cannot_lock_a_person_out(alice: User, staff: User) -> None:
    """Issue 21 probe 10: five bad logins every five minutes locked any username, the
    admin's included, for everyone. Now only for the address that failed them."""
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    assert [log_in(attacker, "wrong") for _ in range(3)] == [200, 200, 429]
    admin_statuses = [
        attacker.post("/admin/login/", {"username": "sam", "password": "nope"}).status_code
        for _ in range(3)
    ]
    assert admin_statuses[-1] == 429
    assert log_in(attacker, "alice-password-1") == 429  # the attacker's address stays locked
    alice_browser = Client(REMOTE_ADDR="198.51.100.7")
    assert log_in(alice_browser, "alice-password-1") == 302
    sam_browser = Client(REMOTE_ADDR="198.51.100.8")
    assert (
        sam_browser.post(
            "/admin/login/", {"username": "sam", "password": "sam-password-1"}
        ).status_code
        == 302
    )


def test_one_address_spraying_many_usernames_is_refused(alice: User, settings: Any) -> None:
    settings.COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT = 5
    sprayer = Client(REMOTE_ADDR="203.0.113.10")
    statuses = [
        sprayer.post(
            "/accounts/login/", {"username": f"user{n}", "password": "Winter2026"}
        ).status_code
        for n in range(6)
    ]
    # No username failed twice, yet the address is refused at its own limit.
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert log_in(sprayer, "alice-password-1") == 429  # even a right password, from there
    assert log_in(Client(REMOTE_ADDR="198.51.100.7"), "alice-password-1") == 302


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
