"""Why a finished job's speedup is what it is, in words, from what Coreboard records.

Speedup is CPU seconds over wall seconds (see Job.speedup). When it is far below the
number of processes that ran the job, one of three things is usually true, and each can
be read from the chunks' timestamps and CPU times:

- the chunks were tiny: each did a few milliseconds of work and waited longer than that
  between chunks (queueing, dispatch, bookkeeping);
- the processes shared the CPU with other jobs, so a chunk's wall time holds other work;
- a few long chunks ran alone at the end (the tail).

The page also compares the run with the same person's parallelism-1 runs of the same
parameters, which is the speedup people usually mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from jobs.models import Chunk, Job

# Below this share of the ideal speedup, the page explains the figure.
LOW_EFFICIENCY = 0.75
# Chunks should do at least this much work each (docs/decisions.md: slots, not one task per chunk).
GOOD_CHUNK_SECONDS = 0.3
# A chunk whose CPU time is under this share of its run time waited for the CPU.
SHARED_CPU_SHARE = 0.8
TAIL_SHARE = 0.3


@dataclass(frozen=True)
class Baseline:
    job_id: int
    wall_seconds: float
    speedup: float


@dataclass(frozen=True)
class SpeedupInsight:
    ideal: int
    notes: list[str] = field(default_factory=list)
    baseline: Baseline | None = None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _run_seconds(chunk: Chunk) -> float | None:
    if chunk.started_at is None or chunk.finished_at is None:
        return None
    return max(0.0, (chunk.finished_at - chunk.started_at).total_seconds())


def _other_jobs_during(job: Job, start: datetime, end: datetime) -> int:
    """Other jobs, anybody's, that were running at some time in [start, end]."""
    return (
        Job.objects.filter(started_at__lt=end)
        .filter(Q(finished_at__gt=start) | Q(finished_at__isnull=True))
        .exclude(pk=job.pk)
        .count()
    )


def job_baseline(job: Job) -> Baseline | None:
    """The owner's latest parallelism-1 success with the same kind and parameters."""
    runs = (
        Job.objects.filter(
            owner_id=job.owner_id,
            kind=job.kind,
            params=job.params,
            parallelism=1,
            status=Job.Status.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .exclude(pk=job.pk)
        .order_by("-finished_at")
    )
    for run in runs[:1]:
        wall = run.wall_seconds
        if wall and job.wall_seconds:
            return Baseline(job_id=run.pk, wall_seconds=wall, speedup=wall / job.wall_seconds)
    return None


def job_speedup_insight(job: Job) -> SpeedupInsight | None:
    """Notes on a finished job's speedup; None while it runs or when it never started."""
    if job.is_active or job.started_at is None or job.finished_at is None:
        return None
    wall = job.wall_seconds or 0.0
    chunks = list(
        job.chunks.exclude(started_at=None).only(
            "started_at", "finished_at", "cpu_seconds", "worker", "pid"
        )
    )
    processes = {(c.worker, c.pid) for c in chunks if c.pid}
    # An all-processes job (parallelism 0) is measured against the processes it used.
    ideal = max(1, min(len(processes) or 1, job.parallelism or len(processes)))
    baseline = job_baseline(job) if job.parallelism != 1 else None
    notes: list[str] = []
    runs = [(c, r) for c in chunks if (r := _run_seconds(c)) is not None]
    speedup = job.speedup
    if speedup is None or not runs or wall <= 0 or speedup >= LOW_EFFICIENCY * ideal:
        return SpeedupInsight(ideal=ideal, notes=notes, baseline=baseline)

    notes.append(
        f"The speedup is {speedup:.2f}× where {ideal} process{'es' if ideal > 1 else ''} "
        f"could give up to {ideal}×. Here is why:"
    )
    busy = sum(r for _, r in runs)
    work = sum(c.cpu_seconds or 0.0 for c, _ in runs)
    per_chunk_work = work / len(runs)
    per_chunk_overhead = max(0.0, ideal * wall - busy) / len(runs)
    if per_chunk_work < GOOD_CHUNK_SECONDS and per_chunk_overhead > per_chunk_work / 2:
        notes.append(
            f"Chunks averaged {_ms(per_chunk_work)} of work and {_ms(per_chunk_overhead)} "
            f"of overhead each (queueing, dispatch, bookkeeping): use fewer, bigger chunks, "
            f"of at least {_ms(GOOD_CHUNK_SECONDS)} of work each."
        )
    if busy > 0 and work < SHARED_CPU_SHARE * busy:
        others = _other_jobs_during(job, job.started_at, job.finished_at)
        plural = "s" if others != 1 else ""
        shared = f"with {others} other job{plural}" if others else "with other work"
        notes.append(
            f"The CPU was shared {shared}: chunks got the CPU for only "
            f"{work / busy:.0%} of the time they ran."
        )
    elif len(processes) < job.parallelism:
        notes.append(
            f"Only {len(processes)} worker process{'es' if len(processes) != 1 else ''} ran "
            f"its chunks (parallelism {job.parallelism}): the other workers were busy or the "
            f"job had too few chunks."
        )
    tail = _tail_share(runs, job)
    if tail is not None and tail > TAIL_SHARE:
        notes.append(
            f"For the last {tail:.0%} of the wall time, some processes had nothing left to do "
            f"while the last chunks finished: more, smaller chunks even this out."
        )
    if len(notes) == 1:
        notes.append(
            "Start-up and the last chunk's bookkeeping take a fixed time: short jobs show a "
            "low figure; jobs of a few seconds or more show the real one."
        )
    return SpeedupInsight(ideal=ideal, notes=notes, baseline=baseline)


def _tail_share(runs: list[tuple[Chunk, float]], job: Job) -> float | None:
    last_by_process: dict[tuple[str, int | None], datetime] = {}
    for chunk, _ in runs:
        key = (chunk.worker, chunk.pid)
        finished = chunk.finished_at
        if finished is not None and (key not in last_by_process or finished > last_by_process[key]):
            last_by_process[key] = finished
    if len(last_by_process) < 2 or job.started_at is None or job.finished_at is None:
        return None
    wall = (job.finished_at - job.started_at).total_seconds()
    first_idle = min(last_by_process.values())
    return max(0.0, (job.finished_at - first_idle).total_seconds() / wall) if wall > 0 else None
