"""Reads that every socket of a daphne process shares.

Each open job page re-reads its job every SOCKET_BEAT_S (its version, and `job.live`: four
queries and a Redis read) and each overview reads the cluster every second. With many
people watching, most of those reads ask the same question at nearly the same moment: five
pages of one job asked it five times, 100 sockets 300 queries a second, all through the one
thread that runs the consumers' database calls, while the same process must relay every
chunk's end at once (issue 20: with every core computing, pages saw a chunk's end seconds
late). A SharedRead asks once per key at a time and gives its answer to every socket that
asks within `max_age_s`: a socket's figures are then at most that much older, which the
beat's own period already dwarfs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedRead(Generic[K, V]):
    """`read(key)` at most once per key at a time, its answer reused for `max_age_s`.

    Callers that ask while a read is under way await that read instead of starting
    another. A read that fails is not kept: every caller that awaited it gets its error,
    and the next one reads again. One instance per process; the answers it keeps are
    plain values, so it serves every event loop (the in-flight read only its own).
    """

    def __init__(self, read: Callable[[K], Awaitable[V]], *, max_age_s: float) -> None:
        self._read = read
        self.max_age_s = max_age_s
        self._kept: dict[K, tuple[float, V]] = {}
        self._reading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] <= self.max_age_s:
            return kept[1]
        running = self._reading.get(key)
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(running)
        future: asyncio.Future[V] = asyncio.ensure_future(self._read(key))
        self._reading[key] = future
        try:
            value = await asyncio.shield(future)
        finally:
            if self._reading.get(key) is future:
                del self._reading[key]
        self._kept[key] = (now, value)
        self._forget_old(now)
        return value

    def _forget_old(self, now: float) -> None:
        # Keys of jobs nobody watches any more go once they are stale.
        if len(self._kept) > 64:
            old = [k for k, (at, _) in self._kept.items() if now - at > self.max_age_s]
            for key in old:
                del self._kept[key]

    def clear(self) -> None:
        self._kept.clear()
