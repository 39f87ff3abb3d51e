"""Publishing live progress to channel-layer groups, throttled and coalesced per job.

Each process gets one publisher thread with its own event loop and a long-lived Redis
connection: `async_to_sync(group_send)` per event would open a connection per call
(~150 events/s). Events carry absolute state, so a dropped one is repaired by the next,
and a per-job sequence number (a Redis counter) lets consumers detect gaps and resync.
The counter never goes back when Redis loses its data (FLUSHALL, a restart without
persistence): a missing counter starts again at the Redis server's clock in microseconds,
far above any number it gave before, so a page's socket sees a jump and resyncs.
Each is a `protocol.JobChangedEvent` to the job's group; the consumers relay it to their
sockets as the public `job.progress` message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from jobs import protocol
from jobs.engine import redis_clients
from jobs.protocol import ChunkDelta, ChunkState, JobState

logger = logging.getLogger(__name__)

SEQ_TTL_SECONDS = 7 * 24 * 3600

# A missing counter is based on the Redis server's clock (TIME: seconds, microseconds), in
# microseconds: above every number the lost counter gave unless it counted more than a
# million events a second since it began (a job's publishers send at most ten a second
# each), and below 2**53 (exact in JavaScript) until the year 2255.
_SEQ_BASE = """
-- A write after TIME needs effects replication (the default from Redis 5 on).
if redis.replicate_commands then
  redis.replicate_commands()
end
local function base()
  local now = redis.call('time')
  return now[1] .. string.format('%06d', tonumber(now[2]))
end
"""
_SEQ_NEXT = (
    _SEQ_BASE
    + """
if redis.call('exists', KEYS[1]) == 0 then
  redis.call('set', KEYS[1], base())
end
local seq = redis.call('incr', KEYS[1])
redis.call('expire', KEYS[1], ARGV[1])
return seq
"""
)
_SEQ_CURRENT = (
    _SEQ_BASE
    + """
local seq = redis.call('get', KEYS[1])
if not seq then
  seq = base()
  redis.call('set', KEYS[1], seq, 'EX', ARGV[1])
end
return seq
"""
)


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def seq_key(job_id: int) -> str:
    return f"coreboard:job:{job_id}:seq"


def redis_client() -> aioredis.Redis:
    """An asyncio client on the channel layer's database, with the engine's Redis timeouts
    (jobs.engine.redis_clients) and no retry of a timed-out command."""
    seconds = redis_clients.timeout_s()
    return aioredis.from_url(
        settings.CHANNEL_LAYER_REDIS_URL,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
        retry=AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


# One client per event loop (daphne has one): a client per call opened a connection, and
# redis-py reads package metadata from disk for each new connection.
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def _loop_client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = _loop_clients[loop] = redis_client()
    return client


async def current_seq(job_id: int) -> int:
    """The job's last sequence number (a missing counter is started, see _SEQ_BASE)."""
    value = await _loop_client().eval(_SEQ_CURRENT, 1, seq_key(job_id), SEQ_TTL_SECONDS)
    return int(value)


async def next_seq(client: aioredis.Redis, job_id: int) -> int:
    """The job's next sequence number (a missing counter is started, see _SEQ_BASE)."""
    value = await client.eval(_SEQ_NEXT, 1, seq_key(job_id), SEQ_TTL_SECONDS)
    return int(value)


@dataclass
class _Pending:
    """What waits to be published for one job: its newest state, chunk deltas merged."""

    job: JobState | None = None
    chunks: dict[int, ChunkDelta] = field(default_factory=dict)


class _Publisher:
    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        # Events sent as they are, in order (chunk output, process samples): not coalesced.
        self._events: list[tuple[int, dict[str, Any]]] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._kicked = False
        # Numbered events whose send was cut off, by job: sent again first.
        self._unsent: dict[int, dict[str, Any]] = {}
        threading.Thread(target=self._thread_main, name="coreboard-events", daemon=True).start()
        self._ready.wait(timeout=5)

    @property
    def owned_by_this_process(self) -> bool:
        return self._pid == os.getpid()

    def publish(self, job_id: int, *, job: JobState | None, chunks: Sequence[ChunkDelta]) -> None:
        with self._lock:
            entry = self._pending.setdefault(job_id, _Pending())
            if job is not None:
                entry.job = job
            for chunk in chunks:
                merged = entry.chunks.setdefault(chunk["index"], {"index": chunk["index"]})
                merged.update(chunk)
            kick = self._kick_once()
        if kick:
            kick()

    def publish_event(self, job_id: int, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append((job_id, event))
            kick = self._kick_once()
        if kick:
            kick()

    def _kick_once(self) -> Callable[[], None] | None:
        """The publisher thread is woken once per batch of events it will send, not once
        per event: a wake-up (a write to its loop's pipe, the thread taking the GIL) per
        1 ms chunk costs the chunks more than the event does. Called under the lock."""
        if self._kicked or self._loop is None or self._kick is None:
            return None
        self._kicked = True
        loop, event = self._loop, self._kick

        def kick() -> None:
            loop.call_soon_threadsafe(event.set)

        return kick

    def _drain(self) -> tuple[dict[int, _Pending], list[tuple[int, dict[str, Any]]]]:
        with self._lock:
            pending, self._pending = self._pending, {}
            raw, self._events = self._events, []
            self._kicked = False
        return pending, raw

    def _thread_main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()
        self._ready.set()
        layer = get_channel_layer()
        client = redis_client()
        interval = settings.COREBOARD_PUBLISH_INTERVAL_MS / 1000
        url = settings.CHANNEL_LAYER_REDIS_URL
        while True:
            await self._kick.wait()
            if not redis_clients.usable(url):
                # Redis is known not to answer: the coalesced job states (one per job) wait
                # for it, the raw events (output, samples: the database keeps them) go.
                with self._lock:
                    self._events.clear()
                await asyncio.sleep(redis_clients.PROBE_EVERY_S)
                continue
            self._kick.clear()
            pending, raw = self._drain()
            for job_id, message in raw:
                await self._bounded(url, layer.group_send(job_group(job_id), message), job_id)
            for job_id, event in list(self._unsent.items()):
                await self._bounded(url, self._send(layer, job_id, event), job_id)
            for job_id, entry in pending.items():
                if job_id in self._unsent:
                    # Its numbered event before it is still not out: this one waits, in
                    # order, rather than make every page see a gap and resync.
                    self._merge_back(job_id, entry)
                    continue
                await self._bounded(url, self._send_changed(client, layer, job_id, entry), job_id)
            await asyncio.sleep(interval)

    async def _bounded(self, url: str, sending: Coroutine[Any, Any, None], job_id: int) -> None:
        """Await one publication for at most the Redis timeout. Live progress is best
        effort: the database stays the truth and pages resync from it, so a Redis hiccup
        must never fail or hold up a chunk, and a hung Redis opens the breaker (the next
        publications wait for it to answer instead of timing out one by one)."""
        if not redis_clients.usable(url):
            sending.close()
            return
        try:
            async with asyncio.timeout(redis_clients.timeout_s()):
                await sending
        except TimeoutError as error:
            redis_clients.report_unanswered(url, error)
        except redis.RedisError as error:
            logger.warning("could not publish an event of job %s: %s", job_id, error)
        except Exception:
            logger.exception("could not publish an event of job %s", job_id)

    async def _send_changed(
        self, client: aioredis.Redis, layer: Any, job_id: int, entry: _Pending
    ) -> None:
        """Number the job's changes and send them. Once numbered, the event is sent until
        it goes out (with the same number): a send cut off by the Redis timeout would
        otherwise leave a gap in the job's numbers, and every page of it would resync."""
        seq = await next_seq(client, job_id)
        event = dict(
            protocol.job_changed_event(
                job_id=job_id, seq=seq, job=entry.job, chunks=list(entry.chunks.values())
            )
        )
        self._unsent[job_id] = event
        await self._send(layer, job_id, event)

    async def _send(self, layer: Any, job_id: int, event: dict[str, Any]) -> None:
        await layer.group_send(job_group(job_id), event)
        if self._unsent.get(job_id) is event:
            del self._unsent[job_id]

    def _merge_back(self, job_id: int, entry: _Pending) -> None:
        """Put changes not sent yet back in front of any that came meanwhile."""
        with self._lock:
            newer = self._pending.get(job_id)
            if newer is not None:
                entry.job = newer.job or entry.job
                for index, chunk in newer.chunks.items():
                    entry.chunks.setdefault(index, {"index": index}).update(chunk)
            self._pending[job_id] = entry
            kick = self._kick_once()
        if kick:
            kick()


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def _get_publisher() -> _Publisher:
    global _publisher
    with _publisher_lock:
        # A prefork child inherits the parent's object but not its thread.
        if _publisher is None or not _publisher.owned_by_this_process:
            _publisher = _Publisher()
        return _publisher


def job_changed(
    job_state: JobState,
    chunk_states: Sequence[ChunkState],
    deltas: Sequence[ChunkDelta] = (),
) -> None:
    """Publish a job's absolute state (and some of its chunks', and `deltas`) to its group."""
    changes = [protocol.chunk_state_delta(state) for state in chunk_states]
    _get_publisher().publish(job_state["id"], job=job_state, chunks=[*changes, *deltas])


def chunks_changed(job_id: int, chunk_states: Sequence[ChunkDelta]) -> None:
    """Publish what changed of some chunks (claimed, started, finished) as it happens."""
    _get_publisher().publish(job_id, job=None, chunks=chunk_states)


def chunk_progressed(job_id: int, index: int, fraction: float) -> None:
    _get_publisher().publish(
        job_id,
        job=None,
        chunks=[protocol.chunk_progress_delta(index, fraction)],
    )


def event_publish(job_id: int, event: dict[str, Any]) -> None:
    """Send a channel-layer event to a job's group as it is (best effort, in order)."""
    _get_publisher().publish_event(job_id, event)
