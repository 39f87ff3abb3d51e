"""Reads of a person's notification settings, webhooks and delivery logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.shortcuts import get_object_or_404

from jobs.models import NotificationDelivery, NotificationSettings, Webhook

# Deliveries of each hook shown in its log, newest first.
LOG_ROWS = 10


@dataclass(frozen=True)
class HookLog:
    hook: Webhook
    deliveries: list[NotificationDelivery]


def notification_settings_of(owner: Any) -> NotificationSettings:
    """Their settings, or the defaults (unsaved) for one who never chose."""
    prefs = NotificationSettings.objects.filter(owner=owner).first()
    return prefs if prefs is not None else NotificationSettings(owner=owner)


def webhook_logs_of(owner: Any) -> list[HookLog]:
    """Each of their hooks with its last deliveries (the last one's response first)."""
    return [
        HookLog(
            hook=hook, deliveries=list(hook.deliveries.order_by("-created_at", "-id")[:LOG_ROWS])
        )
        for hook in Webhook.objects.filter(owner=owner)
    ]


def email_log_of(owner: Any) -> list[NotificationDelivery]:
    return list(
        NotificationDelivery.objects.filter(
            owner=owner, channel=NotificationDelivery.Channel.EMAIL
        ).order_by("-created_at", "-id")[:LOG_ROWS]
    )


def webhook_get_for_user(*, user: Any, hook_id: int) -> Webhook:
    """Their hook, or 404 (another person's hook does not exist for them)."""
    return get_object_or_404(Webhook, pk=hook_id, owner=user)
