"""`Authorization: Token <key>` for DRF views, for /metrics and for websockets."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from tokens import services

KEYWORD = "Token"


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's header format (`Token <key>`), looked up in our hashed, expiring tokens."""

    keyword = KEYWORD

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = services.token_authenticate(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token


def key_from_header(value: str | bytes | None) -> str | None:
    """The key of an `Authorization: Token <key>` header value, or None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not value:
        return None
    scheme, _, key = value.strip().partition(" ")
    return key.strip() or None if scheme.lower() == KEYWORD.lower() else None


async def scope_with_token(scope: dict[str, Any]) -> dict[str, Any]:
    """The websocket's scope with its `Authorization: Token` header checked, once: its
    `api_token_user` (None without a valid token) and `api_token_key` (the key of a valid
    token, else None). The origin check (jobs.sockets.guards) exempts only a socket whose
    token authenticates, and TokenAuthMiddleware then makes it that token's person."""
    if "api_token_user" in scope:
        return scope
    headers = dict(scope.get("headers", []))
    key = key_from_header(headers.get(b"authorization"))
    token = await database_sync_to_async(services.token_authenticate)(key=key) if key else None
    return {
        **scope,
        "api_token_header": key is not None,
        "api_token_user": token.user if token else None,
        "api_token_key": key if token else None,
    }


class TokenAuthMiddleware:
    """Channels middleware: a websocket with `Authorization: Token <key>` is that user.

    Sits inside AuthMiddlewareStack, so a session still works; a token header, when sent,
    wins (an invalid one makes the socket anonymous rather than falling back on the
    cookie). Browsers cannot set this header on a websocket, so this is for the command line.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = await scope_with_token(scope)
        if scope["api_token_header"]:
            scope = {**scope, "user": scope["api_token_user"] or AnonymousUser()}
        return await self.inner(scope, receive, send)
