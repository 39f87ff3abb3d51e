"""Whether the channel layer's Redis answers, as this daphne process sees it.

One watch per event loop, shared by every open socket: while sockets are open it pings
Redis every PING_INTERVAL_S with a PING_TIMEOUT_S deadline, and a consumer whose own Redis
call failed reports it at once. Each socket hears every change, so a hung Redis (SIGSTOP,
a partition: calls wait instead of failing) or a lost one pauses every page within a few
seconds, with a message that says so, and every page resyncs when Redis answers again.

Without the watch, only the consumer that happened to hold channels-redis' shared receive
lock met the error; the others waited on that lock, open and silent (issue 19).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 2.0
# What a Redis call raises when Redis is gone, refused the connection or did not answer in
# time (redis' ConnectionError and TimeoutError are RedisErrors; asyncio's is TimeoutError).
BROKER_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)

Listener = Callable[[bool], Coroutine[Any, Any, None]]


class BrokerWatch:
    """Is the channel layer's Redis at `url` answering? Listeners are called (each in its
    own task) with True or False whenever the answer changes."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.available = True
        self._back = asyncio.Event()
        self._back.set()
        self._listeners: dict[Listener, None] = {}
        self._pinger: asyncio.Task[None] | None = None
        self._confirming: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        # Listener calls in flight, kept so that they are not garbage-collected mid-way.
        self._calls: set[asyncio.Task[None]] = set()

    def subscribe(self, listener: Listener) -> None:
        self._listeners[listener] = None
        if self.url is not None and (self._pinger is None or self._pinger.done()):
            self._pinger = asyncio.create_task(self._ping_while_watched())

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.pop(listener, None)

    def failed(self, error: BaseException) -> None:
        """A consumer's Redis call failed. Redis is asked at once: if it does not answer,
        every socket hears that updates are paused; if it does (a dropped connection, not
        a lost Redis), every socket resyncs, since messages may have been lost with the
        connection, and the pages stay live."""
        if not self.available or self.url is None:
            return
        log.warning("the channel layer's Redis failed a call: %r", error)
        if self._confirming is None or self._confirming.done():
            self._confirming = asyncio.create_task(self._confirm())

    async def wait_available(self) -> None:
        await self._back.wait()

    async def _confirm(self) -> None:
        if await self._answers():
            self._notify(True)
        else:
            self._change(False)

    def _change(self, available: bool) -> None:
        if available == self.available:
            return
        self.available = available
        if available:
            self._back.set()
            log.warning("the channel layer's Redis answers again")
        else:
            self._back.clear()
            log.warning("the channel layer's Redis is unavailable; live updates are paused")
        self._notify(available)

    def _notify(self, available: bool) -> None:
        for listener in list(self._listeners):
            call = asyncio.create_task(listener(available))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _answers(self) -> bool:
        if self._client is None:
            assert self.url is not None  # noqa: S101 (only a watch with a URL pings)
            # A client of its own, failing fast: the layer's pool may hold connections
            # that a drop left dead, and its reads block for seconds by design (BZPOPMIN).
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=PING_TIMEOUT_S,
                socket_connect_timeout=PING_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                try:
                    await self._client.ping()
                except redis.ConnectionError:
                    # The drop that made a consumer fail may have closed this connection
                    # too: a Redis that is up answers on a new one.
                    await self._client.connection_pool.disconnect()
                    await self._client.ping()
        except BROKER_ERRORS:
            return False
        return True

    async def _ping_while_watched(self) -> None:
        while self._listeners:
            self._change(await self._answers())
            await asyncio.sleep(PING_INTERVAL_S)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await client.aclose()


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BrokerWatch] = (
    weakref.WeakKeyDictionary()
)


def layer_url(layer: Any) -> str | None:
    """The Redis URL of a channels-redis layer (its first host); None for another layer
    (the in-memory one of unit tests), which has no broker to lose."""
    hosts = getattr(layer, "hosts", None)
    if not hosts:
        return None
    address = hosts[0].get("address")
    return address if isinstance(address, str) else None


def watch_for(layer: Any) -> BrokerWatch:
    """This event loop's watch of `layer`'s Redis (the one daphne serves every socket on)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    url = layer_url(layer)
    if watch is None or watch.url != url:
        watch = _watches[loop] = BrokerWatch(url)
    return watch
