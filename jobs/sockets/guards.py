"""What makes a websocket as strict as a page: the exact origin, a per-person cap on open
sockets, and a session that still holds (a socket closes soon after logout, a password
change or expiry)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib import auth
from django.http.request import split_domain_port, validate_host

from jobs.protocol import CLOSE_TOO_MANY_SOCKETS, CLOSE_UNAUTHENTICATED
from tokens import services as tokens

log = logging.getLogger(__name__)


Scope = dict[str, Any]


# --- origin ----------------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin1")
    return None


def _is_secure(scope: Scope) -> bool:
    if scope.get("scheme") in {"wss", "https"}:
        return True
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, expected = proxy
        header = name.lower().removeprefix("http_").replace("_", "-").encode()
        return _header(scope, header) == expected
    return False


def _origin_key(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port


def origin_allowed(scope: Scope) -> bool:
    """Whether the socket's Origin is this site's own (scheme, host and port of the Host
    it asked for, the host in ALLOWED_HOSTS) or one of CSRF_TRUSTED_ORIGINS, the rule
    Django's CSRF check applies to a POST."""
    origin = _header(scope, b"origin")
    if not origin:
        return False
    key = _origin_key(origin)
    if key is None:
        return False
    trusted = {_origin_key(o) for o in settings.CSRF_TRUSTED_ORIGINS}
    if key in trusted:
        return True
    host = _header(scope, b"host")
    if not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if _is_secure(scope) else "http"
    return key == _origin_key(f"{scheme}://{host}")


class ExactOriginValidator:
    """Refuses a websocket handshake (403) whose Origin is not exactly this site's.

    Channels' AllowedHostsOriginValidator compares host names only, so
    `http://localhost:9999` passed wherever `localhost` is allowed. A socket that names
    its credential in an `Authorization` header (the command line; browsers cannot set
    one on a websocket) is exempt: the check guards against ambient credentials, cookies,
    and such a socket is that token's person only (tokens.authentication).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        has_token = _header(scope, b"authorization") is not None
        if scope["type"] == "websocket" and not has_token and not origin_allowed(scope):
            await WebsocketDenier()(scope, receive, send)
            return
        await self.app(scope, receive, send)


# --- open sockets per person, and the session behind them -------------------------------------

# Open sockets per user id, in this daphne process.
_open: Counter[int] = Counter()


def _session_user_pk(session_key: str | None) -> Any:
    """The pk of the user a session still logs in (None once it ended, expired, or the
    password changed), checked as Django checks it for a page."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return user.pk if user.is_authenticated else None


def _token_user_pk(key: str) -> Any:
    """The pk of the user an API token still logs in (None once revoked or expired)."""
    token = tokens.token_authenticate(key=key)
    return token.user.pk if token else None


def open_sockets(user_pk: Any) -> int:
    """How many of this person's sockets this process counts against their cap."""
    return _open.get(user_pk, 0)


class GuardedConsumer(AsyncJsonWebsocketConsumer):
    """Base of Coreboard's consumers: `guard_connect` after accept, `guard_disconnect`."""

    guarded_user_pk: Any = None
    session_watch: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # A consumer that dies of an error (the channel layer's Redis dropped its
        # connection) never gets `websocket_disconnect`: its socket must leave the count
        # all the same, or the person's pages are refused for good once it fills.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.guard_disconnect()

    async def guard_connect(self, user: Any) -> bool:
        """Count the socket against its person's cap and watch its session; False (and the
        socket closed) when the person already has the most sockets allowed."""
        limit = settings.COREBOARD_MAX_SOCKETS_PER_USER
        if _open[user.pk] >= limit:
            await self.send_json(
                {
                    "type": "error",
                    "error": f"You have {limit} live connections open, the most allowed "
                    "(COREBOARD_MAX_SOCKETS_PER_USER); close a tab.",
                }
            )
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)
            return False
        _open[user.pk] += 1
        self.guarded_user_pk = user.pk
        token_key = self.scope.get("api_token_key")
        if token_key is not None:
            check = database_sync_to_async(_token_user_pk)
            self.session_watch = asyncio.create_task(self._watch(user.pk, check, token_key))
        else:
            session = self.scope.get("session")
            key = getattr(session, "session_key", None)
            check = database_sync_to_async(_session_user_pk)
            self.session_watch = asyncio.create_task(self._watch(user.pk, check, key))
        return True

    async def guard_disconnect(self) -> None:
        if self.guarded_user_pk is not None:
            _open[self.guarded_user_pk] -= 1
            if _open[self.guarded_user_pk] <= 0:
                del _open[self.guarded_user_pk]
            self.guarded_user_pk = None
        if self.session_watch is not None:
            self.session_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.session_watch
            self.session_watch = None

    async def _watch(self, user_pk: Any, check: Any, credential: str | None) -> None:
        """Close the socket once its session (or API token) no longer logs its person in."""
        interval = settings.COREBOARD_SOCKET_SESSION_CHECK_MS / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                current = await check(credential)
            except Exception:
                log.exception("checking a websocket's session failed")
                continue
            if current != user_pk:
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
