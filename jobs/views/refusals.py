"""The pages' one translation of a refusal (jobs.services.errors): a message on the page
it redirects to, or its errors beside the fields of the form shown again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from jobs.services.errors import Conflict, Refused


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
    (a job that ended meanwhile) reads better at `messages.INFO`."""
    for message in refused.messages:
        messages.add_message(request, level, f"{prefix}{message}")
    response: HttpResponse = redirect(to, *args, **kwargs)
    return response


def form_add_refusal(refused: Refused, *forms_: forms.Form) -> None:
    """Put each error beside its field, on the first form that has a field of that name;
    an object of errors (`params`, by parameter) is opened; errors of no field (a quota,
    `__all__`) and a conflict's message go above the first form."""
    first = forms_[0]
    if isinstance(refused, Conflict):
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
