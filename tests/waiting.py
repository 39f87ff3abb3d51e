"""Awaiting job states in tests and benchmarks, woken by the job's channel-layer events."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.layers import channel_layers

from jobs.engine import events
from jobs.models import Job

T = TypeVar("T")


def wait_until(job_id: int, check: Callable[[], T | None], *, timeout: float = 90) -> T:
    """Block until `check()` (run against the database) returns something truthy.

    Woken by the job's progress events on the channel layer; since events may be
    coalesced or dropped, the database is re-read at least every second either way.
    """

    async def _wait() -> T:
        # A layer of its own: channels-redis keeps per-loop state (receive locks) that a
        # shared instance would carry into the next call's new event loop.
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel()
        await layer.group_add(events.job_group(job_id), channel)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    value: T | None = await database_sync_to_async(check)()
                    if value:
                        return value
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):
                            await layer.receive(channel)
        finally:
            await layer.group_discard(events.job_group(job_id), channel)
            await layer.close_pools()

    return async_to_sync(_wait)()


def wait_for_job(job_id: int, *, until: set[str], timeout: float = 90) -> Job:
    def check() -> Job | None:
        job = Job.objects.get(pk=job_id)
        return job if job.status in until else None

    return wait_until(job_id, check, timeout=timeout)


def poll_until(check: Callable[[], T | None], *, timeout: float = 60, every: float = 0.2) -> T:
    """Poll the database until `check()` returns something truthy: for faults during which
    the channel layer (Redis) is down, so there is no event to wait for."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout:.0f} s")
        time.sleep(every)
    return value


def wait_for_chunk_running_on(job_id: int, pids: set[int]) -> None:
    """Until one of the job's chunks runs in one of these processes."""
    from jobs.models import Chunk

    poll_until(lambda: Chunk.objects.filter(job_id=job_id, status="running", pid__in=pids).exists())


class JobEvents:
    """Every channel-layer event sent to a job's group from the moment it is made, read in a
    thread of its own (one event loop for the listener's whole life: channels-redis ties a
    channel to its layer instance); `next` awaits the next one that matches."""

    def __init__(self, job_id: int) -> None:
        # When each `job.changed` arrived here (time.time()), by seq: what a page could
        # have had at best.
        self.changed_at: dict[int, float] = {}
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._listen(job_id),))
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("could not join the job's group")

    async def _listen(self, job_id: int) -> None:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel()
        await layer.group_add(events.job_group(job_id), channel)
        self._ready.set()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        event = await layer.receive(channel)
                        if event.get("type") == "job.changed":
                            self.changed_at.setdefault(event["seq"], time.time())
                        self._queue.put(event)
        finally:
            await layer.group_discard(events.job_group(job_id), channel)
            await layer.close_pools()

    def next(
        self, match: Callable[[dict[str, Any]], bool], *, timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event within {timeout:.0f} s")
            with contextlib.suppress(queue.Empty):
                event = self._queue.get(timeout=left)
                if match(event):
                    return event

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
