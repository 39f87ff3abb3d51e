"""daphne, with request bodies that cost what they weigh.

Twisted's `Request.requestReceived` parses every multipart or urlencoded POST body on the
reactor thread (the stdlib `email` parser, ~10x the body in memory) before daphne hands
the request on, and nothing reads the result (Twisted issue 4519). A 100 MB upload, even
without a login, cost ~1 GB of RSS and stalled every request for seconds. This module is
daphne's command line with one change at that seam, `LimitedRequest`:

- the unused form parsing is switched off (`parsePOSTFormSubmission`), so a body is only
  written to Twisted's temporary file;
- a body is refused from its headers when it cannot be accepted: over the upload limit
  (413), or bigger than a login form without any credentials (401: no session cookie,
  no Authorization header). A body without a Content-Length is counted while it arrives;
- a refused request is answered at once and the rest of its body is read and dropped for
  a few seconds (so the client sees the answer rather than a reset), then the connection
  closes;
- an accepted body is not copied into memory: daphne hands the application a body by
  putting all of it, in 8 KB messages, into the application's queue at once; our queue
  (`BodyFromFileQueue`) keeps only where each piece lies in Twisted's temporary file and
  reads it back when the application asks.

Run it as `python -m launcher.server <daphne arguments>` (launcher.run does).
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from functools import partial
from typing import Any

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from django.conf import settings
from twisted.internet import reactor

from launcher.limits import ENVELOPE_BYTES
from launcher.parent import exit_with_parent

# Bodies up to this size need no credentials (login forms, logout, CSRF-protected forms).
ANONYMOUS_BODY_MAX_BYTES = 64 * 1024
# How long the rest of a refused body is drained before the connection closes.
LINGER_S = 5.0

_REASONS = {401: b"Unauthorized", 413: b"Content Too Large"}


def upload_limit() -> int:
    return int(settings.COREBOARD_UPLOAD_MAX_BYTES)


def has_credentials(headers: Any) -> bool:
    """Whether a request carries a session cookie or an Authorization header (unchecked:
    checking needs the database; the application does it)."""
    if headers.hasHeader(b"authorization"):
        return True
    cookie_name = settings.SESSION_COOKIE_NAME.encode()
    for line in headers.getRawHeaders(b"cookie") or []:
        for part in line.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == cookie_name and value:
                return True
    return False


def body_refusal(*, length: int | None, credentials: bool) -> tuple[int, str] | None:
    """The status and message a body of `length` bytes (None: unknown yet) gets, if any."""
    limit = upload_limit()
    if length is not None and length > limit + ENVELOPE_BYTES:
        return 413, f"The request body is larger than the limit of {limit:,} bytes."
    if not credentials and (length is None or length > ANONYMOUS_BODY_MAX_BYTES):
        return 401, "Log in first: a body this large needs authentication."
    return None


class LimitedRequest(WebRequest):
    """daphne's request without Twisted's form parsing, with body limits while receiving."""

    refused = False
    received = 0
    limit = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted parses multipart and urlencoded bodies into `args` unless told not to.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        credentials = has_credentials(self.requestHeaders)
        self.limit = upload_limit() + ENVELOPE_BYTES if credentials else ANONYMOUS_BODY_MAX_BYTES
        chunked = self.requestHeaders.hasHeader(b"transfer-encoding")
        if not length and not (length is None and chunked):
            return  # no body
        refusal = body_refusal(length=length, credentials=credentials)
        if refusal is not None:
            # No "100 Continue" after the answer: the client need not send the body at all.
            self.requestHeaders.removeHeader(b"expect")
            self._refuse(*refusal)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        if self.received > self.limit:
            credentials = self.limit > ANONYMOUS_BODY_MAX_BYTES
            self._refuse(
                *(body_refusal(length=self.received, credentials=credentials) or (413, ""))
            )
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            # The whole refused body has been drained: the answer is out, close now.
            self.channel.loseConnection()
            return
        super().requestReceived(command, path, version)

    def _refuse(self, status: int, message: str) -> None:
        self.refused = True
        content: Any = self.content  # type: ignore[has-type]
        content.close()
        self.content = io.BytesIO()
        body = json.dumps({"detail": message}).encode()
        head = (
            f"HTTP/1.1 {status} ".encode()
            + _REASONS[status]
            + b"\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
        )
        self.channel.transport.write(head + body)
        self.channel.persistent = False
        # Twisted declares interface methods without `self` (zope.interface style), which
        # mypy reads as an unbound call without the mypy-zope plugin.
        reactor.callLater(LINGER_S, self._linger_over)  # type: ignore[arg-type]

    def _linger_over(self) -> None:
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.loseConnection()


class LimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LimitedRequest
        return protocol


class BodyFromFileQueue(asyncio.Queue[dict[str, Any]]):
    """An application's input queue that holds a request body's place, not its bytes."""

    def __init__(self, protocol: Any) -> None:
        super().__init__()
        self.protocol = protocol
        self.offset = 0

    def put_nowait(self, item: dict[str, Any]) -> None:
        content = getattr(self.protocol, "content", None)
        if item.get("type") == "http.request" and item.get("body") and content is not None:
            length = len(item["body"])
            item = {**item, "body": b"", "coreboard_body_at": (self.offset, length)}
            self.offset += length
        super().put_nowait(item)

    async def get(self) -> dict[str, Any]:
        item = await super().get()
        place = item.pop("coreboard_body_at", None)
        if place is None:
            return item
        offset, length = place
        try:
            content = self.protocol.content
            content.seek(offset)
            item["body"] = content.read(length)
        except (ValueError, OSError):
            return {"type": "http.disconnect"}  # the request went away and its file with it
        return item


class CoreboardServer(Server):
    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        # daphne's, with BodyFromFileQueue instead of a plain asyncio.Queue.
        assert "application_instance" not in self.connections[protocol]  # noqa: S101
        input_queue = BodyFromFileQueue(protocol)  # websockets have no `content`: plain
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue


class CoreboardCommandLine(CommandLineInterface):
    server_class = CoreboardServer


def main() -> None:
    # Started by `make run`: end with it (SIGTERM: daphne's own clean stop).
    exit_with_parent(signal.SIGTERM)
    # daphne's Server.run builds `daphne.server.HTTPFactory(self)`; this process uses ours.
    daphne.server.HTTPFactory = LimitedHTTPFactory
    CoreboardCommandLine().run(sys.argv[1:])


if __name__ == "__main__":
    main()
