"""The notifications page in Chromium: by keyboard on a 360 px phone, axe-clean, with a
webhook added (its secret shown once) and "send test" delivered by the worker to a real
receiver, whose log then shows the answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, ViewportSize, expect

from jobs.models import NotificationDelivery, NotificationSettings, Webhook
from tests.browser.test_browser import (  # noqa: F401 (fixtures)
    CSP_WATCH,
    assert_page_is_sound,
    browser,
    log_in,
)
from tests.factories import make_job
from tests.processes import ServerProcess
from tests.services.test_notifications_services import docs_verify
from tests.waiting import poll_until
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The narrowest phone the issue names.
NARROW: ViewportSize = {"width": 360, "height": 740}


@pytest.fixture
def phone(browser: Browser, celery_worker: ServerProcess) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport=NARROW, is_mobile=True, has_touch=True)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as started:
        yield started


def press(page: Page, role: str, name: str, key: str = "Enter") -> None:
    page.get_by_role(role, name=name).focus()  # type: ignore[arg-type]
    page.keyboard.press(key)


def test_choose_events_add_a_hook_and_send_a_test_by_keyboard_on_a_phone(
    phone: Page, daphne_server: str, alice: User, receiver: Receiver
) -> None:
    page = phone
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications", level=1)).to_be_visible()
    assert_page_is_sound(page, "notifications, nothing set")

    press(page, "checkbox", "A job succeeded", " ")
    page.get_by_label("E-mail address").fill("not an address")
    press(page, "button", "Save")
    expect(page.get_by_text("Enter a valid email address.")).to_be_visible()
    assert not NotificationSettings.objects.exists()  # bad input changes nothing
    page.get_by_label("E-mail address").fill("alice@example.org")
    press(page, "button", "Save")
    expect(page.get_by_text("Notification settings saved.")).to_be_visible()
    prefs = NotificationSettings.objects.get(owner=alice)
    assert (prefs.on_succeeded, prefs.on_failed, prefs.email) == (True, True, "alice@example.org")

    page.get_by_label("Webhook URL").fill(receiver.url)
    press(page, "button", "Add webhook")
    secret = page.locator("#new-secret code").text_content()
    hook = Webhook.objects.get(owner=alice)
    assert secret == hook.secret
    assert_page_is_sound(page, "notifications, a hook just added")

    press(page, "button", f"Send test to {receiver.url}")
    expect(page.get_by_text("A test POST")).to_be_visible()
    (post,) = receiver.wait_for(1, timeout=60)
    assert docs_verify()(secret, post.headers, post.body)
    assert post.headers["Coreboard-Event"] == "test"

    poll_until(lambda: NotificationDelivery.objects.filter(webhook=hook, status="sent").first())
    page.reload()
    # The secret is never shown again.
    expect(page.locator("#new-secret")).to_have_count(0)
    assert secret not in page.content()
    log = page.get_by_role("table", name=f"Delivery log of {receiver.url}")
    expect(log).to_contain_text("200 answer 200")
    expect(log).to_contain_text(post.delivery_id)
    assert_page_is_sound(page, "notifications with a delivery log")

    # A job that ends: its e-mail (the console backend, in the worker) and its POST.
    job = make_job(alice, committed=True, chunks=1, ms=1, parallelism=1)
    receiver.wait_for(2, timeout=60)
    poll_until(lambda: NotificationDelivery.objects.filter(job=job, status="sent").count() == 2)
    page.reload()
    expect(page.get_by_role("table", name="E-mail delivery log")).to_contain_text(
        "alice@example.org"
    )
    expect(log).to_contain_text("succeeded")
    assert_page_is_sound(page, "notifications with an e-mail and a webhook log")

    press(page, "button", f"Delete webhook {receiver.url}")
    expect(page.get_by_text("You have no webhooks.")).to_be_visible()
