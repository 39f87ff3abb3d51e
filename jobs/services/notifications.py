"""A person's notification settings and webhooks (what the settings page does).

Sending is not here: a worker sends every notification (jobs.engine.notify), from the
outbox rows written with a job's final state or by `webhook_test`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.engine import notify
from jobs.models import NotificationDelivery, NotificationSettings, Webhook
from jobs.services.errors import Conflict, Rejected, TooMany

# One test POST per hook at most this often.
TEST_INTERVAL_S = 10
# The longest threshold one may set (a week): longer is a typo, not a wish.
MIN_MINUTES_MAX = 7 * 24 * 60


def notification_settings_save(
    *,
    owner: Any,
    email: str,
    on_succeeded: bool,
    on_failed: bool,
    on_cancelled: bool,
    min_minutes: int,
) -> NotificationSettings:
    """Store what `owner` wants to hear about and at which address ("" : no e-mail)."""
    if not 0 <= min_minutes <= MIN_MINUTES_MAX:
        raise Rejected({"min_minutes": [f"Between 0 and {MIN_MINUTES_MAX} minutes."]})
    prefs, _ = NotificationSettings.objects.update_or_create(
        owner=owner,
        defaults={
            "email": email,
            "on_succeeded": on_succeeded,
            "on_failed": on_failed,
            "on_cancelled": on_cancelled,
            "min_minutes": min_minutes,
        },
    )
    return prefs


def webhook_create(*, owner: Any, url: str) -> tuple[Webhook, str]:
    """A new webhook of `owner` and its signing secret (shown to them once)."""
    refusal = notify.url_refusal(url)
    if refusal is not None:
        raise Rejected({"url": [f"Refused: {refusal}."]})
    with transaction.atomic():
        # The owner's settings row (made if missing) serialises their hooks' count.
        NotificationSettings.objects.get_or_create(owner=owner)
        NotificationSettings.objects.select_for_update().get(owner=owner)
        limit = settings.COREBOARD_WEBHOOKS_PER_PERSON
        if Webhook.objects.filter(owner=owner).count() >= limit:
            raise TooMany(
                {
                    "url": [
                        f"You have {limit} webhooks, the most one person may have "
                        "(COREBOARD_WEBHOOKS_PER_PERSON); delete one first."
                    ]
                }
            )
        secret = secrets.token_urlsafe(32)
        hook = Webhook.objects.create(owner=owner, url=url, secret=secret)
    return hook, secret


def webhook_delete(*, hook: Webhook) -> None:
    """Delete a hook and its delivery log (a pending delivery is then given up)."""
    hook.delete()


def webhook_test(*, hook: Webhook) -> NotificationDelivery:
    """Queue a test POST to `hook`, sent by a worker; Conflict while one is pending or
    within TEST_INTERVAL_S of the last (the button must not make Coreboard a way to flood
    somebody's URL)."""
    with transaction.atomic():
        Webhook.objects.select_for_update().get(pk=hook.pk)
        tests = hook.deliveries.filter(event=NotificationDelivery.Event.TEST)
        if tests.filter(status=NotificationDelivery.Status.PENDING).exists():
            raise Conflict("A test of this webhook is still being sent; see its delivery log.")
        recent = timezone.now() - timedelta(seconds=TEST_INTERVAL_S)
        if tests.filter(created_at__gt=recent).exists():
            raise Conflict(
                f"This webhook was tested less than {TEST_INTERVAL_S} seconds ago; "
                "try again in a moment."
            )
        return notify.delivery_test_record(hook=hook)
