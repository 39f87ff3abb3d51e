"""The pages' one translation of a refusal (jobs.services.errors): a message on the page
it redirects to, or its errors beside the fields of the form shown again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from jobs.services.errors import Conflict, RateLimited, Refused


def refusal_redirect(
    request: HttpRequest,
    refused: Refused,
    to: str,
    *args: Any,
    level: int = messages.ERROR,
    prefix: str = "",
    **kwargs: Any,
) -> HttpResponse:
    """Each of the refusal's messages (after `prefix`) as a message, then a redirect to
    `to` (resolved as `redirect` does). A conflict the person may simply have raced
    (a job that ended meanwhile) reads better at `messages.INFO`. A rate limit is answered
    with its own page instead (`rate_limited_page`): a 429 cannot redirect."""
    if isinstance(refused, RateLimited):
        return rate_limited_page(request, refused)
    for message in refused.messages:
        messages.add_message(request, level, f"{prefix}{message}")
    response: HttpResponse = redirect(to, *args, **kwargs)
    return response


def rate_limited_page(request: HttpRequest, refused: RateLimited) -> HttpResponse:
    """429 with `Retry-After` and the rate's message on a page of its own."""
    response = render(request, "429.html", {"message": refused.message}, status=429)
    response["Retry-After"] = str(refused.retry_after_s)
    return response


def refusal_status(refused: Refused | None, response: HttpResponse) -> HttpResponse:
    """A form page shown again after `refused`: 429 with `Retry-After` for a rate limit."""
    if isinstance(refused, RateLimited):
        response.status_code = 429
        response["Retry-After"] = str(refused.retry_after_s)
    return response


def form_add_refusal(refused: Refused, *forms_: forms.Form) -> None:
    """Put each error beside its field, on the first form that has a field of that name;
    an object of errors (`params`, by parameter) is opened; errors of no field (a quota,
    `__all__`), a conflict's message and a rate limit's go above the first form."""
    first = forms_[0]
    if isinstance(refused, Conflict | RateLimited):
        first.add_error(None, refused.messages)
        return
    _errors_place(refused.body(), forms_)


def _errors_place(errors: Any, forms_: tuple[forms.Form, ...]) -> None:
    for name, value in errors.items():
        if isinstance(value, dict):
            _errors_place(value, forms_)
            continue
        owner = next((form for form in forms_ if name in form.fields), None)
        listed = value if isinstance(value, list) else [value]
        if owner is None or name == NON_FIELD_ERRORS:
            forms_[0].add_error(None, listed)
        else:
            owner.add_error(name, listed)
