"""The API tokens page: create (key shown once), list with last use, revoke."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tokens import services
from tokens.forms import TokenCreateForm


def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST or None)
    new_token = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            new_token = services.token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_in_days=form.cleaned_data["expires_in_days"],
            )
            form = TokenCreateForm()
        else:
            status = 400
    # The key is rendered in this response only (no redirect: it must not sit in a session).
    response = render(
        request,
        "tokens/token_list.html",
        {
            "form": form,
            "new_token": new_token,
            "tokens": services.tokens_visible_to(request.user),
            "show_owner": request.user.is_staff,
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = services.tokens_visible_to(request.user).filter(pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    services.token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked; it no longer works.")
    return redirect("tokens:list")
