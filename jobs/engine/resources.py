"""What a chunk costs its process: user and system CPU time, resident memory at its start
and at its peak; and the per-job timeline of each worker process's CPU use and memory.

CPU time comes from getrusage(RUSAGE_SELF): user and system apart, to the microsecond, at
the cost of time.process_time() (os.times() counts in 10 ms clock ticks, so a 5 ms chunk
would read 0).

The peak: on Linux the kernel keeps a process's high-water mark of resident memory
(VmHWM in /proc/self/status) and resets it to the current size when "5" is written to
/proc/self/clear_refs (it only resets a counter: about a microsecond). So a chunk resets
it, runs, and reads it: the peak of that chunk alone. Elsewhere (or where /proc is not
writable) the peak is the larger of the resident memory at the start and at the end, via
psutil; a peak in between is then missed.

Samples: while a process runs a job's chunks, a sampler thread measures its CPU use and
resident memory every SAMPLE_INTERVAL_S, publishes them (`job.resources`) and stores them
(`ProcessSample`) in batches. A job's stored samples thin out as they pile up: every
second for its first THIN_EVERY rows, then every 2 s, 4 s, ... and none past
MAX_SAMPLES_PER_JOB (counted in Redis across processes); the live messages stay at 1 s.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import psutil
import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from jobs import protocol
from jobs.engine import events, redis_clients, workers
from jobs.models import ProcessSample

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
STORE_EVERY_S = 5.0
THIN_EVERY = 1000
MAX_SAMPLES_PER_JOB = 10_000
SAMPLES_COUNT_TTL_S = 7 * 24 * 3600


# --- one chunk ------------------------------------------------------------------------------------


class _Proc:
    """This process's /proc files, opened once (per process: a forked child must not read
    its parent's)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.status: int | None = None
        self.clear_refs: int | None = None
        try:
            self.status = os.open("/proc/self/status", os.O_RDONLY)
            self.clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:
            pass

    def peak_reset(self) -> bool:
        if self.clear_refs is None or self.status is None:
            return False
        try:
            os.write(self.clear_refs, b"5")
        except OSError:
            self.clear_refs = None
            return False
        return True

    def read(self) -> tuple[int, int] | None:
        """(resident now, high-water mark), bytes."""
        if self.status is None:
            return None
        try:
            text = os.pread(self.status, 8192, 0)
        except OSError:
            return None
        return _status_field(text, b"VmRSS:"), _status_field(text, b"VmHWM:")


def _status_field(text: bytes, name: bytes) -> int:
    start = text.find(name)
    if start < 0:
        return 0
    end = text.find(b"\n", start)
    return int(text[start + len(name) : end].split()[0]) * 1024


_proc: _Proc | None = None


def _proc_here() -> _Proc:
    global _proc
    if _proc is None or _proc.pid != os.getpid():
        _proc = _Proc()
    return _proc


def rss_now() -> int:
    """This process's resident memory, bytes."""
    read = _proc_here().read()
    return read[0] if read else int(psutil.Process().memory_info().rss)


@dataclass(frozen=True)
class Usage:
    """What one chunk's run cost its process."""

    cpu_user_s: float
    cpu_system_s: float
    start_rss: int
    peak_rss: int

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_user_s + self.cpu_system_s


class ChunkMeter:
    """Measures one chunk: `ChunkMeter()` right before it runs, `.stop()` right after."""

    __slots__ = ("_hwm", "_proc", "_start_rss", "_times")

    def __init__(self) -> None:
        self._proc = _proc_here()
        self._hwm = self._proc.peak_reset()
        read = self._proc.read() if self._hwm else None
        self._start_rss = read[0] if read else int(psutil.Process().memory_info().rss)
        self._times = resource.getrusage(resource.RUSAGE_SELF)

    def stop(self) -> Usage:
        times = resource.getrusage(resource.RUSAGE_SELF)
        read = self._proc.read() if self._hwm else None
        if read is not None:
            peak = max(read[1], self._start_rss)
        else:
            peak = max(self._start_rss, int(psutil.Process().memory_info().rss))
        return Usage(
            cpu_user_s=max(times.ru_utime - self._times.ru_utime, 0.0),
            cpu_system_s=max(times.ru_stime - self._times.ru_stime, 0.0),
            start_rss=self._start_rss,
            peak_rss=peak,
        )


# --- the per-job timeline -----------------------------------------------------------------------


def samples_count_key(job_id: int) -> str:
    return f"coreboard:job:{job_id}:samples"


def store_interval_s(stored: int) -> float:
    """How far apart a job's stored samples are once it has `stored` of them."""
    return SAMPLE_INTERVAL_S * float(2 ** (stored // THIN_EVERY))


class _Sampler:
    """This process's sampler thread: while it runs a job's chunks, a sample a second."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.job_id: int | None = None
        self.running = False
        self.busy_until = 0.0
        self._process = psutil.Process()
        self._process.cpu_percent()
        self._unsaved: list[ProcessSample] = []
        self._last_stored: dict[int, float] = {}
        self._stored: dict[int, int] = {}
        threading.Thread(target=self._run, name="coreboard-sampler", daemon=True).start()

    def _run(self) -> None:
        next_store = time.monotonic() + STORE_EVERY_S
        while True:
            time.sleep(SAMPLE_INTERVAL_S)
            try:
                self._sample()
                if self._unsaved and time.monotonic() >= next_store:
                    next_store = time.monotonic() + STORE_EVERY_S
                    self._store()
            except Exception:
                logger.warning("could not sample this process", exc_info=True)

    def _sample(self) -> None:
        job_id = self.job_id
        cpu = self._process.cpu_percent()
        if job_id is None or not (self.running or time.monotonic() <= self.busy_until):
            return
        at: datetime = timezone.now()
        rss = rss_now()
        process = workers.process_id()
        sample = protocol.resource_sample(
            process=process, at=at.isoformat(), cpu_percent=cpu, rss=rss
        )
        events.event_publish(
            job_id,
            dict(
                protocol.job_sampled_event(
                    protocol.job_resources_message(job=job_id, samples=[sample])
                )
            ),
        )
        stored = self._stored.get(job_id, 0)
        if stored >= MAX_SAMPLES_PER_JOB:
            return
        last = self._last_stored.get(job_id, 0.0)
        if time.monotonic() - last + 0.05 < store_interval_s(stored):
            return
        self._last_stored[job_id] = time.monotonic()
        self._unsaved.append(
            ProcessSample(
                job_id=job_id,
                process=process,
                at=at,
                cpu_percent=sample["cpu_percent"],
                rss=rss,
            )
        )

    def _store(self) -> None:
        batch, self._unsaved = self._unsaved, []
        by_job: dict[int, int] = {}
        for sample in batch:
            by_job[sample.job_id] = by_job.get(sample.job_id, 0) + 1
        try:
            client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
            pipe = client.pipeline(transaction=False)
            for job_id, count in by_job.items():
                pipe.incrby(samples_count_key(job_id), count)
                pipe.expire(samples_count_key(job_id), SAMPLES_COUNT_TTL_S)
            counts = pipe.execute()[::2]
            for job_id, total in zip(by_job, counts, strict=True):
                self._stored[job_id] = int(total)
        except (redis.RedisError, OSError) as error:
            logger.warning("could not count the stored samples: %s", error)
        try:
            ProcessSample.objects.bulk_create(batch)
        except DatabaseError as error:
            # The job was deleted meanwhile, or the database is away: samples are a view.
            logger.warning("could not store process samples: %s", error)
        finally:
            # A write every STORE_EVERY_S does not need a connection held in between.
            connection.close()


_sampler: _Sampler | None = None


def sampling_begin(job_id: int) -> None:
    """This process runs a chunk of `job_id` from now on."""
    global _sampler
    if _sampler is None or _sampler.pid != os.getpid():
        _sampler = _Sampler()
    _sampler.job_id = job_id
    _sampler.running = True


def sampling_end() -> None:
    """The chunk ended; the next one usually follows at once, so the job's sampling goes
    on for a moment (back-to-back chunks make a continuous timeline)."""
    if _sampler is not None:
        _sampler.running = False
        _sampler.busy_until = time.monotonic() + SAMPLE_INTERVAL_S * 1.5
