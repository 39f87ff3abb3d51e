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

Samples: while a pool child runs a job's chunks, the worker's MAIN process measures the
child's CPU use and resident memory from outside (psutil, by pid) every SAMPLE_INTERVAL_S,
publishes them (`job.resources`) and stores them (`ProcessSample`) in batches. It learns
which child runs which job from the stop board (jobs.engine.stopper), which the children
write anyway. Sampling from inside the child would put a thread there that wakes every
second and takes the GIL from the chunk (several handoffs per sample and per publication):
a chunk process runs its chunk and little else. A job's stored samples thin out as they
pile up: every second for its first THIN_EVERY rows, then every 2 s, 4 s, ... and none
past MAX_SAMPLES_PER_JOB (counted in Redis across processes); the live messages stay at
1 s.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import psutil
import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
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
        self.statm: int | None = None
        self.clear_refs: int | None = None
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        try:
            self.status = os.open("/proc/self/status", os.O_RDONLY)
            self.statm = os.open("/proc/self/statm", os.O_RDONLY)
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

    def rss(self) -> int | None:
        """Resident memory now, bytes (statm: a fifth of the cost of status)."""
        if self.statm is None:
            return None
        try:
            return int(os.pread(self.statm, 128, 0).split()[1]) * self.page_size
        except (OSError, IndexError, ValueError):
            return None

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
        rss = self._proc.rss() if self._hwm else None
        self._start_rss = rss if rss is not None else int(psutil.Process().memory_info().rss)
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


@dataclass
class _Child:
    """A pool child the sampler has seen: its psutil handle (cpu_percent measures since the
    last call on it), the job it runs, and until when that job's sampling goes on (the
    next chunk usually follows at once: back-to-back chunks make one timeline)."""

    process: psutil.Process
    job_id: int
    busy_until: float


class ProcessSampler:
    """In a worker's main process: a sample a second of each pool child that runs a job's
    chunks (`busy()` says which: (pid, job id) pairs, from the stop board)."""

    def __init__(self, node: str, busy: Callable[[], Iterable[tuple[int, int]]]) -> None:
        self.node = node
        self.busy = busy
        self._children: dict[int, _Child] = {}
        self._unsaved: list[ProcessSample] = []
        # When each (job, process) last had a sample stored, and each job's stored count.
        self._last_stored: dict[tuple[int, str], float] = {}
        self._stored: dict[int, int] = {}

    def run(self) -> None:
        next_store = time.monotonic() + STORE_EVERY_S
        while True:
            time.sleep(SAMPLE_INTERVAL_S)
            try:
                self.sample()
                if self._unsaved and time.monotonic() >= next_store:
                    next_store = time.monotonic() + STORE_EVERY_S
                    # As Django does around a request: this thread's connection is kept
                    # (a new one every STORE_EVERY_S would cost a backend and an
                    # authentication each), and replaced once past CONN_MAX_AGE or broken.
                    close_old_connections()
                    self.store()
            except Exception:
                logger.warning("could not sample the pool's processes", exc_info=True)

    def sample(self) -> None:
        now = time.monotonic()
        busy = dict(self.busy())
        for pid, child in list(self._children.items()):
            if pid in busy:
                child.job_id = busy.pop(pid)
                child.busy_until = now + SAMPLE_INTERVAL_S * 1.5
            try:
                cpu = child.process.cpu_percent()
                rss = int(child.process.memory_info().rss)
            except psutil.Error:
                del self._children[pid]  # gone: a replacement child gets a new pid
                continue
            if now <= child.busy_until:
                self._sample(workers.process_id(node=self.node, pid=pid), child.job_id, cpu, rss)
        # Children seen for the first time: measured from the next pass on.
        for pid, job_id in busy.items():
            try:
                process = psutil.Process(pid)
                process.cpu_percent()  # the first call only primes the counter
            except psutil.Error:
                continue
            self._children[pid] = _Child(process, job_id, now + SAMPLE_INTERVAL_S * 1.5)
        # What is kept per job goes with the job (it ended, or left this worker's pool).
        jobs = {child.job_id for child in self._children.values()}
        for key in [key for key in self._last_stored if key[0] not in jobs]:
            del self._last_stored[key]
        for job_id in [job_id for job_id in self._stored if job_id not in jobs]:
            del self._stored[job_id]

    def _sample(self, process: str, job_id: int, cpu: float, rss: int) -> None:
        at: datetime = timezone.now()
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
        key = (job_id, process)
        last = self._last_stored.get(key, 0.0)
        if time.monotonic() - last + 0.05 < store_interval_s(stored):
            return
        self._last_stored[key] = time.monotonic()
        self._unsaved.append(
            ProcessSample(
                job_id=job_id,
                process=process,
                at=at,
                cpu_percent=sample["cpu_percent"],
                rss=rss,
            )
        )

    def store(self) -> None:
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


def start_process_sampler(node: str, busy: Callable[[], Iterable[tuple[int, int]]]) -> None:
    """In a worker's main process (with chunk capture on): sample the pool's busy children
    every SAMPLE_INTERVAL_S."""
    if not settings.COREBOARD_CHUNK_CAPTURE:
        return
    sampler = ProcessSampler(node, busy)
    threading.Thread(target=sampler.run, name="coreboard-sampler", daemon=True).start()
