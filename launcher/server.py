"""daphne, with request bodies that cost what they weigh and clients that cannot hold it.

Twisted's `Request.requestReceived` parses every multipart or urlencoded POST body on the
reactor thread (the stdlib `email` parser, ~10x the body in memory) before daphne hands
the request on, and nothing reads the result (Twisted issue 4519). A 100 MB upload, even
without a login, cost ~1 GB of RSS and stalled every request for seconds. This module is
daphne's command line with these changes at its seams:

- `LimitedRequest`: the unused form parsing is switched off (`parsePOSTFormSubmission`),
  so a body is only written to Twisted's temporary file;
- a body is refused from its headers when it cannot be accepted: over the upload limit
  (413), or bigger than a login form (ANONYMOUS_BODY_MAX_BYTES) unless a credential
  *authenticates* (401). A fake `Cookie: sessionid=x` once sufficed, and five parallel
  100 MB bodies spooled 674 MB before their 401s (issue 21). Now such a request's reading
  is paused (`pauseProducing`) while `CredentialCheck` asks the session store or the
  tokens (tokens.credentials, in a thread, its database connection closed after), then
  reading resumes or the request is refused unread. The check's cost is bounded: a result
  is kept for CHECK_CACHE_S, checks of one credential at once are one check, at most
  CHECKS_AT_ONCE run at a time and CHECKS_WAITING_MAX wait (beyond them 503). A body
  without a Content-Length is counted while it arrives;
- a refused request is answered at once and the rest of its body is read and dropped for
  a few seconds (so the client sees the answer rather than a reset), then the connection
  closes;
- slow clients are cut off (408, then the connection closes): a request's headers must
  arrive within COREBOARD_HTTP_HEADER_TIMEOUT_S of the connection opening or of the end of
  the previous request on it (`GuardedChannel`; Twisted's own timeout restarts with every
  byte, so a trickler held a connection forever), and a body must keep up
  COREBOARD_HTTP_BODY_MIN_BYTES_PER_S after COREBOARD_HTTP_BODY_TIMEOUT_S of grace (Apache's
  mod_reqtimeout rule: each byte extends the deadline by 1/rate seconds);
- one client address holds at most COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS connections,
  websockets included (`LimitedHTTPFactory`; one more is answered 429 and closed);
- an accepted body is not copied into memory: daphne hands the application a body by
  putting all of it, in 8 KB messages, into the application's queue at once; our queue
  (`BodyFromFileQueue`) keeps only where each piece lies in Twisted's temporary file and
  reads it back when the application asks;
- the access log shows no query string values (`RedactingAccessLog`): a query may carry a
  secret (a token, a key) that a log must not keep.

Run it as `python -m launcher.server <daphne arguments>` (launcher.run does).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import signal
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import quote

import daphne.cli
import daphne.server
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings
from django.db import connections
from django.utils.module_loading import import_string
from twisted.internet import defer, protocol, reactor, threads
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

from launcher.limits import ENVELOPE_BYTES
from launcher.parent import exit_with_parent

# Twisted declares interface methods without `self` (zope.interface style), which mypy
# reads as unbound calls without the mypy-zope plugin.
_reactor: Any = reactor

log = logging.getLogger(__name__)

# Bodies up to this size need no credentials (login forms, logout, CSRF-protected forms).
ANONYMOUS_BODY_MAX_BYTES = 64 * 1024
# How long the rest of a refused body is drained before the connection closes.
LINGER_S = 5.0
# The application's own check of a session cookie or an `Authorization` header, named by
# path as daphne names the application (`project.asgi:application`): the launcher imports
# no Django app (.importlinter), and runs this only once Django is set up.
CREDENTIALS_CHECK = "tokens.credentials.credentials_authenticate"
# A credential's result is reused this long (a revoked one may still send one big body
# this long after; the application checks it again for the request itself).
CHECK_CACHE_S = 5.0
CHECK_CACHE_MAX = 4096
CHECKS_AT_ONCE = 4
CHECKS_WAITING_MAX = 64
# A check that has not answered by then (a database that hangs) refuses with 503.
CHECK_TIMEOUT_S = 10.0

_REASONS = {
    401: b"Unauthorized",
    408: b"Request Timeout",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    503: b"Service Unavailable",
}


def upload_limit() -> int:
    return int(settings.COREBOARD_UPLOAD_MAX_BYTES)


def answer(status: int, message: str) -> bytes:
    """A whole JSON response that closes its connection, as bytes to write."""
    body = json.dumps({"detail": message}).encode()
    return (
        f"HTTP/1.1 {status} ".encode()
        + _REASONS[status]
        + b"\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + (b"Retry-After: 1\r\n" if status in {429, 503} else b"")
        + b"Connection: close\r\n\r\n"
        + body
    )


Credentials = tuple[str | None, bytes | None]  # (session key, Authorization header)


def credentials_of(headers: Any) -> Credentials:
    """A request's session cookie value and Authorization header, unchecked."""
    authorization = (headers.getRawHeaders(b"authorization") or [None])[0]
    cookie_name = settings.SESSION_COOKIE_NAME.encode()
    session_key = None
    for line in headers.getRawHeaders(b"cookie") or []:
        for part in line.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == cookie_name and value:
                session_key = value.decode("latin-1")
    return session_key, authorization


def has_credentials(headers: Any) -> bool:
    """Whether a request carries a session cookie or an Authorization header (unchecked)."""
    session_key, authorization = credentials_of(headers)
    return bool(session_key or authorization)


def body_refusal(*, length: int | None, credentials: bool) -> tuple[int, str] | None:
    """The status and message a body of `length` bytes (None: unknown yet) gets, if any;
    `credentials`: whether the request carries a credential that authenticates."""
    limit = upload_limit()
    if length is not None and length > limit + ENVELOPE_BYTES:
        return 413, f"The request body is larger than the limit of {limit:,} bytes."
    if not credentials and (length is None or length > ANONYMOUS_BODY_MAX_BYTES):
        return 401, "Log in first: a body this large needs authentication."
    return None


def _check_in_thread(session_key: str | None, authorization: bytes | None) -> bool:
    check: Callable[..., bool] = import_string(CREDENTIALS_CHECK)
    try:
        return bool(check(session_key=session_key, authorization=authorization))
    finally:
        # This pool thread's connection would otherwise stay open, one per thread.
        connections.close_all()


class CredentialCheck:
    """Whether a request's credentials authenticate, asked of the application in a thread,
    at a bounded cost: results cached for CHECK_CACHE_S, one check per credential at a
    time, at most CHECKS_AT_ONCE running and CHECKS_WAITING_MAX waiting."""

    class Busy(Exception):
        """Too many checks are waiting already."""

    def __init__(
        self,
        check: Callable[[str | None, bytes | None], bool] = _check_in_thread,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.clock = clock
        self.results: OrderedDict[bytes, tuple[bool, float]] = OrderedDict()
        self.pending: dict[bytes, list[defer.Deferred[bool]]] = {}
        self.semaphore = defer.DeferredSemaphore(CHECKS_AT_ONCE)

    @staticmethod
    def _key(credentials: Credentials) -> bytes:
        session_key, authorization = credentials
        digest = hashlib.sha256((session_key or "").encode("latin-1"))
        digest.update(b"\0" + (authorization or b""))
        return digest.digest()

    def authenticates(self, credentials: Credentials) -> defer.Deferred[bool]:
        """A Deferred that fires with the answer, or fails with Busy."""
        key = self._key(credentials)
        cached = self.results.get(key)
        if cached is not None and cached[1] > self.clock():
            return defer.succeed(cached[0])
        waiting = self.pending.get(key)
        if waiting is None:
            if len(self.semaphore.waiting) >= CHECKS_WAITING_MAX:
                return defer.fail(self.Busy())
            waiting = self.pending[key] = []
            running: defer.Deferred[bool] = self.semaphore.run(self._in_thread, credentials)
            running.addBoth(self._done, key)
        answer: defer.Deferred[bool] = defer.Deferred()
        waiting.append(answer)
        return answer

    def _in_thread(self, credentials: Credentials) -> defer.Deferred[bool]:
        return threads.deferToThread(self.check, *credentials)

    def _done(self, result: Any, key: bytes) -> None:
        waiting = self.pending.pop(key, [])
        if isinstance(result, Failure):
            log.error("checking a request's credentials failed: %s", result.getErrorMessage())
        ok = result is True  # a check that failed (an exception) authenticates no one
        self.results[key] = (ok, self.clock() + CHECK_CACHE_S)
        self.results.move_to_end(key)
        while len(self.results) > CHECK_CACHE_MAX:
            self.results.popitem(last=False)
        for answer in waiting:
            answer.callback(ok)


_checks: CredentialCheck | None = None


def credential_check() -> CredentialCheck:
    global _checks  # one per process, made once Django is set up
    if _checks is None:
        _checks = CredentialCheck()
    return _checks


def body_deadline(*, started: float, received: int) -> float:
    """When a body that began at `started` and has `received` bytes so far is too slow."""
    return (
        started
        + settings.COREBOARD_HTTP_BODY_TIMEOUT_S
        + received / settings.COREBOARD_HTTP_BODY_MIN_BYTES_PER_S
    )


class LimitedRequest(WebRequest):
    """daphne's request without Twisted's form parsing, with body limits while receiving:
    a credential checked before a big body is read, and a minimum body rate."""

    refused = False
    received = 0
    limit = 0
    checking = False
    expects_continue = False
    body_started: float | None = None
    body_timer: Any = None
    received_request: tuple[bytes, bytes, bytes] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted parses multipart and urlencoded bodies into `args` unless told not to.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)
        self.held: list[bytes] = []

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
            return
        if credentials and (length is None or length > ANONYMOUS_BODY_MAX_BYTES):
            self._check_credentials()
            return
        self._start_body_clock()

    def _check_credentials(self) -> None:
        """Read no more of the body until its credential is known to authenticate."""
        self.checking = True
        expect = self.requestHeaders.getRawHeaders(b"expect") or []
        self.expects_continue = bool(expect) and expect[0].lower() == b"100-continue"
        self.requestHeaders.removeHeader(b"expect")  # sent after the check, if it passes
        self.channel.transport.pauseProducing()
        checked = credential_check().authenticates(credentials_of(self.requestHeaders))
        checked.addTimeout(CHECK_TIMEOUT_S, _reactor)
        checked.addCallbacks(self._checked, self._check_failed)

    def _check_failed(self, failure: Any) -> None:
        # Busy (too many checks waiting) or the check's timeout: the credential may be
        # good, so not 401.
        self._after_check(
            (503, "The server is busy checking other requests' credentials; try again.")
        )

    def _checked(self, ok: bool) -> None:
        if ok:
            self._after_check(None)
        else:
            self._after_check(
                (401, "Log in first: the session or token sent does not authenticate.")
            )

    def _after_check(self, refusal: tuple[int, str] | None) -> None:
        self.checking = False
        if self.channel is None or self.channel.transport is None:
            return  # the client went away meanwhile
        self.channel.transport.resumeProducing()
        if self.refused:
            return  # refused meanwhile (over the limit): its answer is out, the rest drains
        if refusal is not None:
            self._refuse(*refusal)
            if self.received_request is not None:
                self.channel.loseConnection()  # the whole body came with the headers
            return
        if self.expects_continue:
            self.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._start_body_clock()
        held, self.held = self.held, []
        for data in held:
            super().handleContentChunk(data)
        if self.received_request is not None:
            super().requestReceived(*self.received_request)

    def _start_body_clock(self) -> None:
        self.body_started = time.monotonic()
        self._arm_body_timer()

    def _arm_body_timer(self) -> None:
        assert self.body_started is not None  # noqa: S101
        wait = body_deadline(started=self.body_started, received=self.received)
        self.body_timer = _reactor.callLater(
            max(0.0, wait - time.monotonic()), self._body_timer_fired
        )

    def _body_timer_fired(self) -> None:
        self.body_timer = None
        if self.refused or self.received_request is not None or self.channel is None:
            return
        assert self.body_started is not None  # noqa: S101
        if time.monotonic() < body_deadline(started=self.body_started, received=self.received):
            self._arm_body_timer()  # bytes came meanwhile: a later deadline
            return
        rate = settings.COREBOARD_HTTP_BODY_MIN_BYTES_PER_S
        self._refuse(
            408,
            f"The request body came too slowly (under {rate:,} bytes/s, "
            "COREBOARD_HTTP_BODY_MIN_BYTES_PER_S).",
            linger=False,
        )

    def _stop_body_clock(self) -> None:
        if self.body_timer is not None and self.body_timer.active():
            self.body_timer.cancel()
        self.body_timer = None

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
        if self.checking:
            # What the transport had read before it paused: at most one read's worth.
            self.held.append(data)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._stop_body_clock()
        if self.refused:
            # The whole refused body has been drained: the answer is out, close now.
            self.channel.loseConnection()
            return
        if self.checking:
            self.received_request = (command, path, version)  # handled once it is known
            return
        self.received_request = (command, path, version)
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._stop_body_clock()
        super().connectionLost(reason)

    def _refuse(self, status: int, message: str, *, linger: bool = True) -> None:
        self.refused = True
        self._stop_body_clock()
        self.held = []
        content: Any = self.content  # type: ignore[has-type]
        content.close()
        self.content = io.BytesIO()
        self.channel.transport.write(answer(status, message))
        self.channel.persistent = False
        if not linger:
            self.channel.loseConnection()
            return
        _reactor.callLater(LINGER_S, self._linger_over)

    def _linger_over(self) -> None:
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.loseConnection()


# --- connections: header deadline, and a cap per client address --------------------------


class AddressSlots:
    """Open connections per client address, in this process."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()

    def take(self, address: str) -> bool:
        cap = settings.COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS
        if cap and self.open[address] >= cap:
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


SLOTS = AddressSlots()
# Set on a connection's transport: the transport outlives the HTTP channel when daphne
# hands it to a websocket protocol, and whichever protocol has it last gives the slot back.
SLOT_ATTRIBUTE = "coreboard_address"


def release_slot(transport: Any) -> None:
    address = transport.__dict__.pop(SLOT_ATTRIBUTE, None) if transport is not None else None
    if address is not None:
        SLOTS.release(address)


class GuardedChannel(HTTPChannel):
    """Twisted's HTTP channel with a deadline for each request's headers: from the
    connection opening, or from the end of the previous request on a kept-alive
    connection, to the blank line after the headers. Past it, a request that began gets
    408; a connection with nothing sent is closed."""

    address: str | None = None
    header_timer: Any = None
    # Whether any byte of the next request came since the deadline was armed.
    request_begun = False

    def connectionMade(self) -> None:
        if self.address is not None:
            self.transport.__dict__[SLOT_ATTRIBUTE] = self.address
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._arm_header_timer()

    def dataReceived(self, data: bytes) -> None:
        if self.header_timer is not None:
            self.request_begun = True
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def _arm_header_timer(self) -> None:
        self._stop_header_timer()
        self.request_begun = False
        self.header_timer = _reactor.callLater(
            settings.COREBOARD_HTTP_HEADER_TIMEOUT_S, self._header_timer_fired
        )

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None and self.header_timer.active():
            self.header_timer.cancel()
        self.header_timer = None

    def _header_timer_fired(self) -> None:
        self.header_timer = None
        transport: Any = self.transport
        if transport is None or not transport.connected:
            return
        if not self.request_begun:
            # An idle connection (kept alive, or never used) closes without an answer: a
            # 408 could cross a request the client sends at that moment and be read as its
            # response.
            self.timeoutConnection()  # type: ignore[no-untyped-call]
            return
        seconds = settings.COREBOARD_HTTP_HEADER_TIMEOUT_S
        transport.write(
            answer(
                408,
                f"The request's headers did not come within {seconds} s "
                "(COREBOARD_HTTP_HEADER_TIMEOUT_S).",
            )
        )
        self.timeoutConnection()  # type: ignore[no-untyped-call]  # closes; aborts if unread

    def allHeadersReceived(self) -> None:
        self._stop_header_timer()
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def requestDone(self, request: Any) -> None:
        # Armed first: a pipelined request's headers may be parsed within requestDone.
        if self.persistent:
            self._arm_header_timer()
        super().requestDone(request)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Any = None) -> None:
        self._stop_header_timer()
        release_slot(self.transport)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class GuardedWebSocketProtocol(WebSocketProtocol):
    """daphne's websocket protocol, giving its connection's address slot back at the end."""

    def connectionLost(self, reason: Any) -> None:
        release_slot(self.transport)
        super().connectionLost(reason)


class GuardedWebSocketFactory(WebSocketFactory):
    protocol = GuardedWebSocketProtocol


class Refusal(protocol.Protocol):
    """Answers 429 to a connection over its address's cap, and closes it."""

    def connectionMade(self) -> None:
        cap = settings.COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS
        transport: Any = self.transport
        transport.write(
            answer(
                429,
                f"Your address has {cap} connections open, the most allowed "
                "(COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS).",
            )
        )
        transport.loseConnection()


class LimitedHTTPFactory(HTTPFactory):
    def __init__(self, server: Any) -> None:
        super().__init__(server)
        # Twisted's idle timeout (12 hours by default) restarts with every byte; the header
        # deadline (GuardedChannel) is the one that counts. This one ends a connection
        # whose response is written while its client never reads.
        self.timeOut = 60 * 60

    def buildProtocol(self, addr: Any) -> Any:
        # Twisted's HTTPFactory.buildProtocol and daphne's, with our channel and request.
        address = str(getattr(addr, "host", "") or "")
        if address and not SLOTS.take(address):
            refusal = Refusal()
            refusal.factory = self
            return refusal
        channel = GuardedChannel()  # type: ignore[no-untyped-call]
        channel.address = address or None
        built = _GenericHTTPChannelProtocol(channel)
        built.factory = self
        built.callLater = self.reactor.callLater
        built.timeOut = self.timeOut
        built.requestFactory = LimitedRequest
        return built


# --- the access log -------------------------------------------------------------------------

REDACTED = "-"


def redact_query(path: str) -> str:
    """`path` with every query parameter's value replaced by REDACTED (names kept)."""
    base, mark, query = path.partition("?")
    if not mark:
        return path
    names = [part.partition("=")[0] for part in query.split("&") if part]
    return base + "?" + "&".join(f"{quote(name, safe='%')}={REDACTED}" for name in names)


class RedactingAccessLog(AccessLogGenerator):
    """daphne's access log, without query string values."""

    def __call__(self, protocol: Any, action: Any, details: dict[str, Any]) -> None:
        path = details.get("path")
        if isinstance(path, str):
            details = {**details, "path": redact_query(path)}
        super().__call__(protocol, action, details)


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
    # daphne's Server.run builds `daphne.server.HTTPFactory(self)` and a WebSocketFactory,
    # and its command line an AccessLogGenerator; this process uses ours.
    daphne.server.HTTPFactory = LimitedHTTPFactory
    daphne.server.WebSocketFactory = GuardedWebSocketFactory
    daphne.cli.AccessLogGenerator = RedactingAccessLog
    CoreboardCommandLine().run(sys.argv[1:])


if __name__ == "__main__":
    main()
