"""What makes a websocket as strict as a page: the exact origin, a per-person cap on open
sockets, and a session that still holds (a socket closes soon after logout, a password
change or expiry)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections import Counter
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.security.websocket import WebsocketDenier
from channels.utils import await_many_dispatch
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from jobs import protocol
from jobs.protocol import CLOSE_SERVER_ERROR, CLOSE_TOO_MANY_SOCKETS, CLOSE_UNAUTHENTICATED
from jobs.sockets import backlog
from jobs.sockets.broker import BROKER_ERRORS, BrokerWatch, watch_for
from tokens import credentials as credentials_check
from tokens.authentication import scope_with_token

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
    `http://localhost:9999` passed wherever `localhost` is allowed. The check guards
    against ambient credentials (cookies), so every socket gets it except one that a valid
    API token authenticates (the command line; browsers cannot set `Authorization` on a
    websocket), which is that token's person only (tokens.authentication). Any other
    `Authorization` header, or an invalid token, exempts nothing: a foreign page's
    `Basic x` with the visitor's cookie is refused like the cookie alone.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope = await scope_with_token(scope)
            if scope["api_token_key"] is None and not origin_allowed(scope):
                await WebsocketDenier()(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- open sockets per person, and the session behind them -------------------------------------

# Open sockets per user id, in this daphne process.
_open: Counter[int] = Counter()


Credential = tuple[str, str | None]  # ("session", key) or ("token", key)
# What a socket shows depends on these: who, and whether they see everyone's jobs.
Standing = tuple[Any, bool, bool]  # (pk, is_staff, is_superuser)


def standing_of(user: Any) -> Standing:
    return (user.pk, bool(user.is_staff), bool(user.is_superuser))


def _credential_users(credentials: set[Credential]) -> dict[Credential, Any]:
    """The user each credential still logs in (None once it no longer does); a credential
    whose check failed is left out (its sockets stay, checked again next time)."""
    users: dict[Credential, Any] = {}
    for credential in credentials:
        kind, key = credential
        try:
            users[credential] = (
                credentials_check.token_user(key)
                if kind == "token"
                else credentials_check.session_user(key)
            )
        except Exception:
            log.exception("checking a websocket's session failed")
    return users


class CredentialChecks:
    """Every open socket's session (or API token) in this process, checked together every
    COREBOARD_SOCKET_SESSION_CHECK_MS: one trip to the consumers' database thread and one
    check per distinct credential, instead of a trip and a check per socket (120 sockets
    made 60 trips a second through the thread that also answers every other socket's
    reads, and each trip costs a connection health check besides).

    A socket whose credential no longer logs its person in (logout, expiry, a password
    change, a revoked token, a deactivated account) is closed with 4401. One whose person
    became or stopped being staff is re-scoped (GuardedConsumer.standing_changed): a
    demoted member of staff stops seeing other people's jobs on sockets already open."""

    def __init__(self) -> None:
        self._sockets: dict[GuardedConsumer, tuple[Credential, Standing]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, consumer: GuardedConsumer, credential: Credential, user: Any) -> None:
        self._sockets[consumer] = (credential, standing_of(user))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def forget(self, consumer: GuardedConsumer) -> None:
        self._sockets.pop(consumer, None)

    async def _run(self) -> None:
        while self._sockets:
            await asyncio.sleep(settings.COREBOARD_SOCKET_SESSION_CHECK_MS / 1000)
            await self.check_now()

    async def check_now(self) -> None:
        wanted = {credential for credential, _ in self._sockets.values()}
        if not wanted:
            return
        try:
            current = await database_sync_to_async(_credential_users)(wanted)
        except Exception:
            log.exception("checking the websockets' sessions failed")
            return
        for consumer, (credential, standing) in list(self._sockets.items()):
            if credential not in current:
                continue  # its check failed: checked again next time
            user = current[credential]
            try:
                if user is None or user.pk != standing[0]:
                    self._sockets.pop(consumer, None)
                    await consumer.close(code=CLOSE_UNAUTHENTICATED)
                elif standing_of(user) != standing:
                    self._sockets[consumer] = (credential, standing_of(user))
                    await consumer.standing_changed(user)
            except Exception:
                log.exception("following a websocket's changed session failed")


# One per event loop (daphne has one; tests make many).
_credential_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CredentialChecks] = (
    weakref.WeakKeyDictionary()
)


def credential_checks() -> CredentialChecks:
    loop = asyncio.get_running_loop()
    checks = _credential_checks.get(loop)
    if checks is None:
        checks = _credential_checks[loop] = CredentialChecks()
    return checks


def open_sockets(user_pk: Any) -> int:
    """How many of this person's sockets this process counts against their cap."""
    return _open.get(user_pk, 0)


# A socket that has sent nothing else for this long sends `broker.state` as a heartbeat; the
# page reconnects after hearing nothing for a few of these (static/lib/live.mjs).
HEARTBEAT_S = 5.0
# How often a socket checks its heartbeat and whether a client that fell behind caught up.
PULSE_S = 0.5
# A channel receive that failed is tried again after this (and once Redis answers).
RECEIVE_RETRY_S = 0.2
# A client over its backlog bound for this long is behind.
BEHIND_AFTER_S = 1.0


class GuardedConsumer(AsyncJsonWebsocketConsumer):
    """Base of Coreboard's consumers: `guard_connect` after accept, `guard_disconnect`.

    Beyond the cap and the session, it keeps a socket alive through broker trouble and
    slow clients:
    - a Redis error while receiving from the channel layer does not end the consumer: it
      waits for the broker (jobs.sockets.broker) and receives again;
    - the page hears `broker.state` when the broker stops or starts answering
      (`broker_changed` lets a subclass rejoin its groups and resync), and as a heartbeat;
    - updates go through `send_update`, which skips them once the client has left more
      than COREBOARD_SOCKET_BACKLOG_BYTES unread for BEHIND_AFTER_S (jobs.sockets.backlog);
      then `fell_behind` runs (a subclass leaves its groups), and `caught_up` once the
      client has read it down to a quarter (a subclass joins again and resyncs).
    """

    guarded_user_pk: Any = None
    pulse: asyncio.Task[None] | None = None
    broker: BrokerWatch | None = None
    behind = False
    over_since: float | None = None
    last_sent_at = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steps: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # channels' AsyncConsumer.__call__, but with a channel receive that survives Redis
        # errors (there, one killed the consumer), and a count that is released however
        # the consumer ends (a consumer that dies never gets `websocket_disconnect`).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        try:
            if self.channel_layer is None:
                await await_many_dispatch([receive], self.dispatch)
            else:
                self.channel_name = await self.channel_layer.new_channel()
                self.broker = watch_for(self.channel_layer)
                self.broker.subscribe(self._broker_changed)
                channel_receive = functools.partial(
                    self._channel_receive, self.channel_layer, self.broker
                )
                await await_many_dispatch([receive, channel_receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            if self.broker is not None:
                self.broker.unsubscribe(self._broker_changed)
            await self.guard_disconnect()

    async def _channel_receive(self, layer: Any, broker: BrokerWatch) -> dict[str, Any]:
        while True:
            try:
                message: dict[str, Any] = await layer.receive(self.channel_name)
            except BROKER_ERRORS as error:
                broker.failed(error)
                # Not at once: a Redis that answers pings may still fail this call.
                await asyncio.sleep(RECEIVE_RETRY_S)
                await broker.wait_available()
                continue
            return message

    def broker_failed(self, error: BaseException) -> None:
        """A subclass's own Redis call failed: every socket pauses until it answers."""
        log.info("a live socket's Redis call failed: %r", error)
        if self.broker is not None:
            self.broker.failed(error)

    @property
    def broker_available(self) -> bool:
        return self.broker is None or self.broker.available

    async def _broker_changed(self, available: bool) -> None:
        if self.guarded_user_pk is None:
            return  # not (or no longer) an accepted, counted socket
        try:
            await self.broker_changed(available)
            await self.send_json(protocol.broker_state_message(available=available))
        except BROKER_ERRORS as error:
            self.broker_failed(error)
        except Exception:
            log.exception("a live socket failed to follow the broker's state")

    async def broker_changed(self, available: bool) -> None:
        """Called when the channel layer's Redis stops (False) or starts (True) answering,
        before the page hears it: rejoin groups and resync here."""

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        self.last_sent_at = time.monotonic()
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    def client_behind(self) -> bool:
        """Whether the client has left more unread than it may for BEHIND_AFTER_S; marks
        the socket behind. (Twisted writes at its next turn, so one burst of updates is
        over the bound for a moment even for a client that reads at once.)"""
        if self.behind:
            return True
        if backlog.backlog_of(self.scope) <= settings.COREBOARD_SOCKET_BACKLOG_BYTES:
            self.over_since = None
            return False
        now = time.monotonic()
        if self.over_since is None:
            self.over_since = now
        if now - self.over_since < BEHIND_AFTER_S:
            return False
        log.info("a live socket's client stopped reading; updates paused for it")
        self.behind = True
        self.over_since = None
        self._run_soon(self.fell_behind())
        return True

    def _run_soon(self, step: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await step
            except BROKER_ERRORS as error:
                self.broker_failed(error)

        task = asyncio.create_task(guarded())
        self._steps.add(task)
        task.add_done_callback(self._steps.discard)

    async def fell_behind(self) -> None:
        """Called once the client is behind: a subclass leaves its groups here, so that
        nothing more is sent to this socket through Redis. Every message to a group is
        one message per socket in daphne's channel, which daphne reads one at a time: a
        socket that stays in its groups without reading slows every other socket."""

    async def send_update(self, content: Any) -> bool:
        """Send an update the client can do without (a later snapshot or push brings its
        news); skipped, returning False, while the client is behind."""
        if self.client_behind():
            return False
        await self.send_json(content)
        return True

    async def caught_up(self) -> None:
        """Called once a client that fell behind has read what it was sent: a subclass
        joins its groups again, and one whose updates are deltas sends a fresh snapshot."""

    async def _pulse(self) -> None:
        try:
            await self._beat_pulse()
        except asyncio.CancelledError:
            raise
        except Exception:
            # As jobs.sockets.consumers.supervised: the page reconnects and resyncs rather
            # than keep a socket that stopped following its client.
            log.exception("a live socket's pulse failed; closing the socket")
            await self.close(code=CLOSE_SERVER_ERROR)

    async def _beat_pulse(self) -> None:
        limit = settings.COREBOARD_SOCKET_BACKLOG_BYTES
        while True:
            await asyncio.sleep(PULSE_S)
            if not self.behind:
                self.client_behind()  # a client that stopped reading while all was quiet
            elif backlog.backlog_of(self.scope) <= limit // 4:
                self.behind = False
                log.info("a live socket's client caught up")
                try:
                    await self.caught_up()
                except BROKER_ERRORS as error:
                    self.broker_failed(error)  # the resync follows the broker's return
            if not self.behind and time.monotonic() - self.last_sent_at >= HEARTBEAT_S:
                await self.send_json(protocol.broker_state_message(available=self.broker_available))

    async def standing_changed(self, user: Any) -> None:
        """The socket's person became or stopped being staff (CredentialChecks): what it
        shows from now on is what `user` may see. A subclass that holds one job checks it
        is still theirs to see."""
        self.scope["user"] = user

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
        self.last_sent_at = time.monotonic()
        self.pulse = asyncio.create_task(self._pulse())
        if not self.broker_available:
            await self.send_json(protocol.broker_state_message(available=False))
        token_key = self.scope.get("api_token_key")
        if token_key is not None:
            credential: Credential = ("token", token_key)
        else:
            session = self.scope.get("session")
            credential = ("session", getattr(session, "session_key", None))
        credential_checks().watch(self, credential, user)
        return True

    async def guard_disconnect(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: nothing was watched
            credential_checks().forget(self)
        if self.guarded_user_pk is not None:
            _open[self.guarded_user_pk] -= 1
            if _open[self.guarded_user_pk] <= 0:
                del _open[self.guarded_user_pk]
            self.guarded_user_pk = None
        for task in (self.pulse, *self._steps):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.pulse = None
