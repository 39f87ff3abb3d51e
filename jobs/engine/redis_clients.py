"""Redis clients with short timeouts and a circuit breaker, one per URL and process (a
prefork child must not use the connection pool it inherited from its parent).

Redis answers in well under a millisecond, and nothing Coreboard asks of it is worth
stalling a request or a chunk for: live figures, throttle counters, the slot and worker
registries (the reconciler repairs them), progress events (pages resync from PostgreSQL).
So every call gives up after COREBOARD_REDIS_TIMEOUT_MS, and a call that times out (or
cannot connect) opens the breaker of that Redis server in this process: further calls
fail at once with BrokerUnavailable, without touching the socket, until a background
thread's PING is answered again (it tries every PROBE_EVERY_S). A hung Redis (SIGSTOP, a
partition that drops packets) therefore costs each process one timeout per outage, not
one per call; a refused connection costs nothing to find out.

`broker_status()` says, from memory, whether the broker answers (for pages, the API and
the sockets); `broker_usable()` lets a caller on a chunk's path skip its Redis work while
the breaker is open.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.connection import Connection, ConnectionPool, SSLConnection, UnixDomainSocketConnection
from redis.retry import Retry

logger = logging.getLogger(__name__)

# While the breaker is open, a PING this often tells when the server answers again.
PROBE_EVERY_S = 1.0
# Idle pooled connections are checked (a PING) before use after this long, so one that a
# restarted server closed is replaced rather than failing the caller's command.
HEALTH_CHECK_INTERVAL_S = 30
# broker_status() asks the server itself at most this often when no call said lately.
STATUS_CACHE_S = 1.0


class BrokerUnavailable(redis.ConnectionError):
    """Redis did not answer lately; the call was not sent (the breaker is open)."""


def timeout_s() -> float:
    return float(settings.COREBOARD_REDIS_TIMEOUT_MS) / 1000


# --- the breaker: one per Redis server (host, port) and process ---------------------------------


class _Breaker:
    def __init__(self, address: str) -> None:
        self.address = address
        self.lock = threading.Lock()
        # Wall time the server stopped answering; None while it answers.
        self.down_since: float | None = None
        self.error = ""
        # Monotonic time of the last answer or failure, for broker_status's cache.
        self.last_news = 0.0
        self.pid = os.getpid()

    @property
    def open(self) -> bool:
        return self.down_since is not None

    def answered(self) -> None:
        self.last_news = time.monotonic()
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is None:
                return
            outage = time.time() - self.down_since
            self.down_since = None
        logger.warning("Redis at %s answers again (after %.1f s)", self.address, outage)

    def failed(self, error: BaseException, probe: _Probe) -> None:
        self.last_news = time.monotonic()
        with self.lock:
            if self.down_since is not None:
                return
            self.down_since = time.time()
            self.error = str(error) or type(error).__name__
        logger.warning(
            "Redis at %s did not answer (%s); Redis calls are skipped until it does",
            self.address,
            self.error,
        )
        probe.start(self)


class _Probe:
    """The thread that PINGs a server whose breaker is open, until it answers."""

    def __init__(self, connection_kwargs: dict[str, Any], connection_class: type) -> None:
        self.kwargs = connection_kwargs
        self.connection_class = connection_class

    def start(self, breaker: _Breaker) -> None:
        threading.Thread(
            target=self._run, args=(breaker,), name="coreboard-redis-probe", daemon=True
        ).start()

    def _run(self, breaker: _Breaker) -> None:
        # A plain connection: the guarded ones refuse to send while the breaker is open.
        kwargs = {**self.kwargs, "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
        while breaker.open and breaker.pid == os.getpid():
            time.sleep(PROBE_EVERY_S)
            connection = self.connection_class(**kwargs)
            try:
                connection.connect()
                connection.send_command("PING")
                connection.read_response()
            except (redis.RedisError, OSError):
                continue
            else:
                breaker.answered()
            finally:
                connection.disconnect()


_breakers: dict[str, _Breaker] = {}
_breakers_lock = threading.Lock()


def _breaker_for(address: str) -> _Breaker:
    breaker = _breakers.get(address)
    if breaker is None or breaker.pid != os.getpid():
        with _breakers_lock:
            breaker = _breakers.get(address)
            if breaker is None or breaker.pid != os.getpid():
                breaker = _breakers[address] = _Breaker(address)
    return breaker


@functools.lru_cache(maxsize=16)  # asked on every publish and claim permit
def _address_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


# --- guarded connections ----------------------------------------------------------------------


class _Guarded:
    """A redis-py connection that consults its server's breaker: refuses to send while it
    is open, opens it on a timeout (a hung server) or a failed connect, and closes it on
    an answer."""

    _breaker: _Breaker
    _probe: _Probe

    def _guard_init(self, kwargs: dict[str, Any], plain: type) -> None:
        if "path" in kwargs:
            address = str(kwargs["path"])
        else:
            address = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self._breaker = _breaker_for(address)
        self._probe = _Probe(kwargs, plain)

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        if self._breaker.open:
            raise BrokerUnavailable(f"Redis at {self._breaker.address} is not answering")
        try:
            super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        except (redis.TimeoutError, redis.ConnectionError) as error:
            self._breaker.failed(error, self._probe)
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._breaker.open:
            raise BrokerUnavailable(f"Redis at {self._breaker.address} is not answering")
        try:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
        except redis.TimeoutError as error:
            self._breaker.failed(error, self._probe)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.TimeoutError as error:
            self._breaker.failed(error, self._probe)
            raise
        self._breaker.answered()
        return response


class GuardedConnection(_Guarded, Connection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._guard_init(kwargs, Connection)


class GuardedSSLConnection(_Guarded, SSLConnection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard_init(kwargs, SSLConnection)


class GuardedUnixConnection(_Guarded, UnixDomainSocketConnection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._guard_init(kwargs, UnixDomainSocketConnection)


_GUARDED: dict[type, type] = {
    Connection: GuardedConnection,
    SSLConnection: GuardedSSLConnection,
    UnixDomainSocketConnection: GuardedUnixConnection,
}


def connection_options() -> dict[str, Any]:
    """The timeouts every Coreboard Redis client has (redis-py's pool and client options).

    No retry of a timed-out command (redis-py 8 retries three times with a backoff by
    default, so a 5 s timeout became 20 s); one immediate retry of a broken connection,
    which reconnects after a server restart."""
    seconds = timeout_s()
    return {
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }


class GuardedConnectionPool(ConnectionPool):
    """A connection pool whose connections are guarded (the pool_class of Django's Redis
    cache, see project.settings.CACHES)."""

    def __init__(self, **kwargs: Any) -> None:
        plain = kwargs.get("connection_class", Connection)
        kwargs["connection_class"] = _GUARDED.get(plain, plain)
        for name, value in connection_options().items():
            kwargs.setdefault(name, value)
        super().__init__(**kwargs)


# --- clients ------------------------------------------------------------------------------------

_clients: dict[tuple[int, str], redis.Redis] = {}


def for_url(url: str) -> redis.Redis:
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        pool = GuardedConnectionPool.from_url(url, decode_responses=True)
        client = _clients[key] = redis.Redis(connection_pool=pool)
    return client


def broker() -> redis.Redis:
    """A client on the broker's database: the messages, the slot registry and the worker
    registry (jobs.engine.workers says why they share it)."""
    return for_url(settings.CELERY_BROKER_URL)


def report_unanswered(url: str, error: BaseException) -> None:
    """Open the breaker of `url`'s server: a call that is not made with these clients
    (an asyncio one, the channel layer's) found it not answering in time."""
    pool = for_url(url).connection_pool
    plain = next((p for p, g in _GUARDED.items() if g is pool.connection_class), Connection)
    _breaker_for(_address_of(url)).failed(error, _Probe(pool.connection_kwargs, plain))


# --- what pages, the API and slots ask ---------------------------------------------------------


@dataclass(frozen=True)
class BrokerStatus:
    available: bool
    # Wall time since when it has not answered (None while available).
    since: float | None = None
    error: str = ""

    @property
    def text(self) -> str:
        """What it means, in words ("" while available)."""
        if self.available:
            return ""
        return (
            "The broker (Redis) is not answering: live worker figures, throughput and live "
            "output are unavailable. Running chunks go on; new jobs are saved and start "
            "once it answers again."
        )


def usable(url: str) -> bool:
    """False while the breaker of `url`'s server is open (known not to answer): a memory
    read, for callers on a chunk's path that skip their Redis work then."""
    return not _breaker_for(_address_of(url)).open


def broker_usable() -> bool:
    """usable() for the broker."""
    return usable(settings.CELERY_BROKER_URL)


def broker_status(*, ask: bool = True) -> BrokerStatus:
    """Whether the broker answers, from this process's breaker; with `ask`, when no call
    said so in the last STATUS_CACHE_S, one PING (bounded by COREBOARD_REDIS_TIMEOUT_MS)
    asks. Never waits longer than one timeout, and not at all while the breaker is open
    or without `ask` (from memory only: safe on an event loop; asyncio callers that find
    Redis not answering tell the breaker with report_unanswered)."""
    breaker = _breaker_for(_address_of(settings.CELERY_BROKER_URL))
    if ask and not breaker.open and time.monotonic() - breaker.last_news > STATUS_CACHE_S:
        with contextlib.suppress(redis.RedisError):
            broker().ping()
    since = breaker.down_since
    if since is None:
        return BrokerStatus(available=True)
    return BrokerStatus(available=False, since=since, error=breaker.error)
