"""HTTP middleware: request bodies capped before Django spools them (ASGI), and pages for a
logged-in person kept out of caches (Django)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from jobs.engine.job_state import is_lock_timeout
from jobs.views.errors import broker_unavailable, lock_busy
from launcher.limits import ENVELOPE_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


class RequestBodyLimit:
    """Refuse HTTP bodies over `max_bytes` with 413 as soon as that is known.

    Django's ASGI handler reads a whole body into a temporary file before any view or
    upload handler sees it, so the limit is enforced in front of it: from the
    Content-Length header when there is one, else while the body streams in. (daphne's
    Twisted layer buffers a body before the application runs at all; to stop an oversized
    upload at the network edge, put a proxy with a body limit in front.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + ENVELOPE_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Django treats a disconnect as an aborted request and stops reading.
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"file": [f"The upload is larger than the limit of {self.max_bytes:,} bytes."]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class NoStoreWhenLoggedIn:
    """`Cache-Control: no-store` (Django's never-cache headers) on every response to a
    logged-in person that does not set its own caching, so a shared or back-button cache
    never keeps someone's jobs. Static files (WhiteNoise, earlier) are not affected."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response


class LockTimeoutIsBusy:
    """A request that waited too long for a lock answers 503 "busy, try again" (pages and
    API alike) instead of a server error: the lock's holder has stopped answering, and
    PostgreSQL ends its session shortly (project.settings, COREBOARD_DB_*)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return lock_busy(request) if is_lock_timeout(exception) else None


class BrokerErrorIsUnavailable:
    """A request that needed Redis while it does not answer answers 503 "try again" (pages
    and API alike) instead of a server error: Redis calls give up within
    COREBOARD_REDIS_TIMEOUT_MS (jobs.engine.redis_clients), and what needs them cannot be
    done now. A sign-in fails closed: its lockout counter lives there."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return broker_unavailable(request) if isinstance(exception, redis.RedisError) else None
