"""`Authorization: Token <key>` for DRF views, for /metrics and for websockets."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
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


class TokenAuthMiddleware:
    """Channels middleware: a websocket with `Authorization: Token <key>` is that user.

    Sits inside AuthMiddlewareStack, so a session still works; a header, when sent, wins.
    Browsers cannot set this header on a websocket, so this is for the command line.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        key = key_from_header(headers.get(b"authorization"))
        if key is not None:
            token = await sync_to_async(services.token_authenticate)(key=key)
            scope = {
                **scope,
                "user": token.user if token else AnonymousUser(),
                "api_token_key": key if token else None,
            }
        return await self.inner(scope, receive, send)
