"""Whom a request's credentials log in, checked before Django's own request handling does.

Two places must know this before a view runs: daphne's body limit (launcher.server, which
reads a big body only for a credential that authenticates) and the websockets' guards
(jobs.sockets.guards, which recheck every open socket's credential). Both check exactly as a
page checks a session and the API checks a token, through these functions.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib import auth

from tokens import services
from tokens.authentication import key_from_header


def session_user(session_key: str | None) -> Any | None:
    """The user a session still logs in: None once it ended or expired, or the password
    changed (Django's session hash), or the user was deactivated."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return user if user.is_authenticated else None


def token_user(key: str | None) -> Any | None:
    """The user an API token still logs in: None once revoked or expired, or its user was
    deactivated."""
    if not key:
        return None
    token = services.token_authenticate(key=key)
    return token.user if token else None


def credentials_authenticate(*, session_key: str | None, authorization: bytes | None) -> bool:
    """Whether a session cookie or an `Authorization: Token` header logs someone in."""
    return (
        token_user(key_from_header(authorization)) is not None
        or session_user(session_key) is not None
    )
