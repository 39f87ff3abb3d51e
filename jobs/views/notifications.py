"""One's notifications: the events and channels, webhooks with their delivery logs, and
each hook's "send test"."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import NotificationSettingsForm, WebhookForm
from jobs.selectors import notifications as selectors
from jobs.services import Refused
from jobs.services import notifications as services
from jobs.views import refusals


def notification_settings(request: HttpRequest) -> HttpResponse:
    prefs = selectors.notification_settings_of(request.user)
    form = NotificationSettingsForm(
        initial={
            "email": prefs.email,
            "on_succeeded": prefs.on_succeeded,
            "on_failed": prefs.on_failed,
            "on_cancelled": prefs.on_cancelled,
            "min_minutes": prefs.min_minutes,
        }
    )
    hook_form = WebhookForm()
    status = 200
    if request.method == "POST" and "save" in request.POST:
        form = NotificationSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.notification_settings_save(owner=request.user, **form.cleaned_data)
            except Refused as refused:
                refusals.form_add_refusal(refused, form)
            else:
                messages.success(request, "Notification settings saved.")
                return redirect("jobs:notifications")
        status = 400
    elif request.method == "POST" and "add_hook" in request.POST:
        hook_form = WebhookForm(request.POST)
        if hook_form.is_valid():
            try:
                hook, secret = services.webhook_create(
                    owner=request.user, url=hook_form.cleaned_data["url"]
                )
            except Refused as refused:
                refusals.form_add_refusal(refused, hook_form)
                status = refused.status_code
            else:
                # The secret is shown once, on the page this answer renders (never stored
                # in a message, a cookie or a log).
                return _page(
                    request,
                    NotificationSettingsForm(initial=form.initial),
                    WebhookForm(),
                    new_secret=(hook.pk, secret),
                )
        else:
            status = 400
    return _page(request, form, hook_form, status=status)


def _page(
    request: HttpRequest,
    form: NotificationSettingsForm,
    hook_form: WebhookForm,
    *,
    status: int = 200,
    new_secret: tuple[int, str] | None = None,
) -> HttpResponse:
    response = render(
        request,
        "jobs/notifications.html",
        {
            "form": form,
            "hook_form": hook_form,
            "hooks": selectors.webhook_logs_of(request.user),
            "emails": selectors.email_log_of(request.user),
            "hooks_max": settings.COREBOARD_WEBHOOKS_PER_PERSON,
            "new_secret": new_secret,
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def webhook_test(request: HttpRequest, hook_id: int) -> HttpResponse:
    hook = selectors.webhook_get_for_user(user=request.user, hook_id=hook_id)
    try:
        services.webhook_test(hook=hook)
    except Refused as refused:
        return refusals.refusal_redirect(request, refused, "jobs:notifications")
    messages.success(request, f"A test POST to {hook.url} is queued; its result shows below.")
    return redirect("jobs:notifications")


@require_POST
def webhook_delete(request: HttpRequest, hook_id: int) -> HttpResponse:
    hook = selectors.webhook_get_for_user(user=request.user, hook_id=hook_id)
    services.webhook_delete(hook=hook)
    messages.success(request, f"Webhook {hook.url} deleted.")
    return redirect("jobs:notifications")
