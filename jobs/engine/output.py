"""A chunk's output: what it prints, writes to stderr and logs, kept per chunk (bounded),
streamed live and stored with the chunk.

The redirection is installed once per worker process (`capture_install`): `sys.stdout`
and `sys.stderr` become streams that write to the running chunk's buffer when there is
one (else to the streams they replaced), and a handler on the root logger copies log
records into it. A chunk's path pays two assignments (`chunk_output_begin`/`_end`).
Only Python-level writes are captured: a subprocess or C code writing to file
descriptor 1 or 2 goes to the worker's terminal as before.

A buffer keeps the LAST settings.COREBOARD_CHUNK_OUTPUT_BYTES bytes and counts the bytes
cut before them, so a worker's memory stays flat however much its chunks print. While a
chunk writes, a flusher thread publishes its new text (`chunk.output`, at most every
FLUSH_INTERVAL_S) and keeps its tail in Redis for the API; once the chunk ends it
publishes the rest. All of that is best effort: a Redis error never fails a chunk.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

import redis
from django.conf import settings

from jobs import protocol
from jobs.engine import events, redis_clients

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
# The most new text one `chunk.output` message carries, and all of one flush's messages of
# a job: a page that gets less (an empty text at the whole length) fetches it from the API.
LIVE_MESSAGE_BYTES = 64 * 1024
LIVE_FLUSH_BYTES = 256 * 1024
# How long an ended chunk's live tail stays in Redis: until its outcome is recorded (at
# most COREBOARD_FLUSH_MS later), with room to spare. A running chunk's lives as long as
# the chunk may run.
ENDED_TAIL_TTL_S = 120
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Coreboard's own threads (heartbeat, publisher, flusher) never write into a chunk's output.
OWN_THREAD_PREFIX = "coreboard-"


def live_tail_key(job_id: int, index: int) -> str:
    return f"coreboard:chunk-output:{job_id}:{index}"


class OutputBuffer:
    """The last `limit` bytes a chunk wrote (UTF-8), and how many it wrote in all."""

    __slots__ = ("_data", "_lock", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.total = 0
        self._data = bytearray()
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            self.total += len(data)
            if len(data) >= self.limit:
                self._data = bytearray(data[len(data) - self.limit :])
                return
            self._data += data
            # Trimmed in steps, not at every write: at most twice the bound is held.
            if len(self._data) > 2 * self.limit:
                del self._data[: len(self._data) - self.limit]

    def tail(self, since: int = 0) -> tuple[int, str]:
        """(offset, text): the retained output from byte `since` on (from its first retained
        whole character when `since` was cut)."""
        with self._lock:
            kept = bytes(self._data[-self.limit :]) if self.limit else b""
            total = self.total
        start = total - len(kept)
        if since > start:
            kept = kept[min(since, total) - start :]
            start = min(since, total)
        # A cut may fall inside a character: its continuation bytes count as cut.
        skip = 0
        while skip < min(len(kept), 3) and kept[skip] & 0xC0 == 0x80:
            skip += 1
        return start + skip, kept[skip:].decode("utf-8", "replace")

    @property
    def cut_bytes(self) -> int:
        """Bytes before the first whole character retained."""
        with self._lock:
            first = max(len(self._data) - self.limit, 0)
            head = self._data[first : first + 3]
            kept = len(self._data) - first
            total = self.total
        skip = 0
        while skip < len(head) and head[skip] & 0xC0 == 0x80:
            skip += 1
        return total - kept + skip

    @property
    def empty(self) -> bool:
        return self.total == 0


@dataclass(frozen=True)
class Captured:
    """What a chunk wrote, as stored: the retained text (with the cut marker first when
    its beginning was cut) and the bytes cut before it."""

    output: str
    cut_bytes: int
    total_bytes: int

    @classmethod
    def of(cls, buffer: OutputBuffer) -> Captured:
        offset, text = buffer.tail()
        if offset:
            text = protocol.output_cut_marker(offset) + text
        return cls(text, offset, buffer.total)


NOTHING = Captured("", 0, 0)


# --- the current chunk ------------------------------------------------------------------------


@dataclass
class _Running:
    job_id: int
    index: int
    buffer: OutputBuffer
    context: str
    # Bytes already sent live, and whether the chunk's tail is in Redis.
    sent: int = 0
    in_redis: bool = False
    ended: bool = False


_current: _Running | None = None


def _capturing() -> OutputBuffer | None:
    running = _current
    if running is None or threading.current_thread().name.startswith(OWN_THREAD_PREFIX):
        return None
    return running.buffer


def log_context() -> str:
    """` job=12 chunk=3` while a chunk runs in this process, else empty (log formats)."""
    running = _current
    return running.context if running is not None else ""


def log_context_install() -> None:
    """Every log record made in this process (and the pool children it forks) carries
    `chunk_context` (` job=12 chunk=3`, or empty), which the worker's log formats show
    (CELERY_WORKER_LOG_FORMAT). A record factory rather than a handler filter: Celery
    gives loggers such as billiard's their own handlers with the same format."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_chunk_context", False):
        return

    def record_with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.chunk_context = log_context()
        return record

    record_with_context.adds_chunk_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_context)


class _ChunkStream:
    """Stands in for sys.stdout or sys.stderr: the running chunk's buffer, else the stream
    it replaced."""

    def __init__(self, original: TextIO) -> None:
        self._original = original

    def write(self, text: str) -> int:
        buffer = _capturing()
        if buffer is None:
            return self._original.write(text)
        buffer.write(text)
        if _flusher is not None:
            _flusher.wake()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _capturing() is None:
            self._original.flush()

    def isatty(self) -> bool:
        return False if _capturing() is not None else self._original.isatty()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        # Everything else (encoding, fileno, buffer) is the replaced stream's; writes to
        # its `buffer` are not captured.
        if name == "_original":
            raise AttributeError(name)
        return getattr(self._original, name)


class _ChunkLogHandler(logging.Handler):
    """Copies log records into the running chunk's output."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _capturing()
        if buffer is None:
            return
        try:
            buffer.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)
        if _flusher is not None:
            _flusher.wake()


_installed_in: int | None = None


def capture_install() -> None:
    """Redirect this process's stdout, stderr and log records to the running chunk (once
    per process; a no-op with COREBOARD_CHUNK_CAPTURE off)."""
    global _installed_in, _flusher
    if _installed_in == os.getpid() or not settings.COREBOARD_CHUNK_CAPTURE:
        return
    _installed_in = os.getpid()
    if not isinstance(sys.stdout, _ChunkStream):
        sys.stdout = _ChunkStream(sys.stdout)
    if not isinstance(sys.stderr, _ChunkStream):
        sys.stderr = _ChunkStream(sys.stderr)
    root = logging.getLogger()
    if not any(isinstance(handler, _ChunkLogHandler) for handler in root.handlers):
        handler = _ChunkLogHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    _flusher = _Flusher()


def chunk_output_begin(job_id: int, index: int) -> None:
    """A chunk starts in this process: its output goes to a new buffer from now on."""
    global _current
    context = f" job={job_id} chunk={index}"
    if _installed_in != os.getpid():
        _current = _Running(job_id, index, OutputBuffer(0), context)
        return
    _current = _Running(job_id, index, OutputBuffer(settings.COREBOARD_CHUNK_OUTPUT_BYTES), context)


def chunk_output_end() -> Captured:
    """The running chunk ended: what it wrote (the flusher sends what is left live)."""
    global _current
    running, _current = _current, None
    if running is None or running.buffer.empty:
        return NOTHING
    if _flusher is not None:
        _flusher.ended(running)
    return Captured.of(running.buffer)


# --- live: the flusher thread --------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """New output of one chunk, ready to be published (and its tail, for Redis)."""

    job_id: int
    index: int
    offset: int
    text: str
    cut_bytes: int
    # The retained tail as the API reads it (None: not kept in Redis), and for how long.
    tail: str | None
    ttl_s: int


class _Flusher:
    """Publishes new output of this process's chunks at most every FLUSH_INTERVAL_S.

    What an ended chunk still has to send is cut out of its buffer when it ends (at most
    LIVE_FLUSH_BYTES waiting in all), so a worker running thousands of chatty chunks a
    second holds no more than that between two flushes.
    """

    def __init__(self, *, thread: bool = True) -> None:
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._ended: list[_Piece] = []
        self._ended_bytes = 0
        self._running_ttl_s = settings.COREBOARD_CHUNK_TIME_LIMIT_S + ENDED_TAIL_TTL_S
        if thread:
            threading.Thread(target=self._run, name="coreboard-output", daemon=True).start()

    def wake(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def ended(self, running: _Running) -> None:
        with self._lock:
            budget = LIVE_FLUSH_BYTES - self._ended_bytes
            running.ended = True
            piece = self._piece(running, budget)
            self._ended.append(piece)
            self._ended_bytes += len(piece.text)
        self.wake()

    def _piece(self, chunk: _Running, budget: int) -> _Piece:
        """The text of `chunk` not sent yet (within `budget` bytes), from where it starts;
        an empty text at the whole length when there is too much (the page fetches it).
        Called under the lock."""
        buffer = chunk.buffer
        total = buffer.total
        start = max(chunk.sent, total - LIVE_MESSAGE_BYTES)
        chunk.sent = total
        if total - start > max(budget, 0):
            offset, text = total, ""
        else:
            offset, text = buffer.tail(start)
        # A chunk that ends between two flushes never touches Redis: its outcome is
        # recorded within COREBOARD_FLUSH_MS, and the API reads it from there.
        tail = None
        if not chunk.ended or chunk.in_redis:
            tail_offset, tail_text = buffer.tail()
            tail = json.dumps({"offset": tail_offset, "text": tail_text})
            chunk.in_redis = True
        ttl = ENDED_TAIL_TTL_S if chunk.ended else self._running_ttl_s
        return _Piece(chunk.job_id, chunk.index, offset, text, buffer.cut_bytes, tail, ttl)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                logger.warning("could not publish chunk output", exc_info=True)
            time.sleep(FLUSH_INTERVAL_S)

    def flush(self) -> None:
        with self._lock:
            pieces, self._ended, self._ended_bytes = self._ended, [], 0
            running = _current
            if running is not None and running.buffer.total > running.sent:
                spent = sum(len(piece.text) for piece in pieces if piece.job_id == running.job_id)
                pieces.append(self._piece(running, LIVE_FLUSH_BYTES - spent))
        if not pieces:
            return
        url = settings.CHANNEL_LAYER_REDIS_URL
        client = redis_clients.for_url(url)
        pipe = client.pipeline(transaction=False)
        for piece in pieces:
            message = protocol.chunk_output_message(
                job=piece.job_id,
                index=piece.index,
                offset=piece.offset,
                text=piece.text,
                cut_bytes=piece.cut_bytes,
            )
            events.event_publish(piece.job_id, dict(protocol.chunk_printed_event(message)))
            if piece.tail is not None:
                pipe.set(live_tail_key(piece.job_id, piece.index), piece.tail, ex=piece.ttl_s)
        if not len(pipe) or not redis_clients.usable(url):
            # Redis is known not to answer: the tails wait for the outcome in PostgreSQL.
            return
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as error:
            logger.warning("could not keep the live chunk output in Redis: %s", error)


_flusher: _Flusher | None = None


# --- reading the live tails (the API) ------------------------------------------------------------


@dataclass(frozen=True)
class LiveTail:
    """A running (or just ended) chunk's retained output, from Redis."""

    offset: int
    text: str


def live_tails(job_id: int, indexes: list[int]) -> dict[int, LiveTail]:
    """The live tails of these chunks of a job that have one (none when Redis fails)."""
    if not indexes:
        return {}
    client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
    try:
        values = client.mget([live_tail_key(job_id, index) for index in indexes])
    except (redis.RedisError, OSError) as error:
        logger.warning("could not read live chunk output: %s", error)
        return {}
    tails = {}
    for index, value in zip(indexes, values, strict=True):
        if value:
            record = json.loads(value)
            tails[index] = LiveTail(int(record["offset"]), str(record["text"]))
    return tails


def live_captured(job_id: int, index: int) -> Captured | None:
    """A chunk's output as its live tail in Redis holds it, in the stored form: for a
    chunk whose process was ended before it could record its outcome (a kill on cancel or
    time limit), which would otherwise lose what it printed. None when there is no tail
    (it printed nothing, or ended between two flushes)."""
    tail = live_tails(job_id, [index]).get(index)
    if tail is None:
        return None
    text = tail.text
    if tail.offset:
        text = protocol.output_cut_marker(tail.offset) + text
    return Captured(text, tail.offset, tail.offset + len(tail.text.encode()))
