"""Why a succeeded job's speedup is what it is, in words, from what Coreboard measured.

The figures are jobs/scaling.py's (speedup against its baseline, parallelism achieved,
efficiency). The explanation is an account of the processes' time: a job that could use P
processes for W seconds of wall time had P × W process-seconds, and every one of them went
to exactly one of these, each read from the chunks' timestamps and CPU times:

- the chunks' work (their CPU time);
- chunks running without the CPU: a chunk's run time beyond its CPU time, when other
  processes (other jobs, other programs) had the cores, or it waited for I/O;
- between chunks: a process's time from one chunk's end to its next chunk's start (claiming,
  recording, dispatch): per-chunk overhead;
- the tail: a process that ran out of chunks while others still ran theirs (imbalance);
- start-up and finishing: before a process's first chunk, after the job's last chunk;
- processes with no chunk: fewer chunks than processes, or workers busy with other jobs;
- and with a measured baseline, the work the split added: the chunks' CPU time beyond the
  parallelism-1 run's time.

The causes are ranked by the process-seconds each cost, and the page gives one piece of
advice: the top cause's. Failed and cancelled jobs have no speedup, so no explanation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from django.db.models import Count, DateTimeField, F, FloatField, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, Extract

from jobs import scaling
from jobs.models import Chunk, Job

# Below this share of the ideal speedup, the page explains the figure.
LOW_EFFICIENCY = 0.75
# Chunks should do at least this much work each (docs/decisions.md: slots, not one task per chunk).
GOOD_CHUNK_SECONDS = 0.3
# Causes that cost less than this share of the processes' time are not listed.
LISTED_SHARE = 0.02


@dataclass(frozen=True)
class Cause:
    """Process-seconds that went to something other than the chunks' work."""

    key: str
    title: str
    seconds: float
    # Of the processes' time: processes × wall seconds.
    share: float
    detail: str
    advice: str


@dataclass(frozen=True)
class SpeedupInsight:
    """A succeeded job's speedup, its baseline and (when low) its causes, ranked."""

    speedup: float
    baseline: scaling.Baseline
    baseline_seconds: float
    baseline_job_id: int | None
    wall_seconds: float
    parallelism_achieved: float | None
    efficiency: float | None
    processes_used: int | None
    # The processes it could have used: its parallelism (or the processes used, when it
    # asked for all of them), what the ideal speedup is.
    processes: int
    causes: list[Cause] = field(default_factory=list)

    @property
    def explained(self) -> bool:
        """Whether the speedup is low enough for the causes to be worth reading."""
        return self.speedup < LOW_EFFICIENCY * self.processes

    @property
    def good_percent(self) -> int:
        return round(LOW_EFFICIENCY * 100)

    @property
    def advice(self) -> str | None:
        """The one piece of advice: the costliest cause's."""
        return self.causes[0].advice if self.causes and self.explained else None


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _plural(n: int, word: str, suffix: str = "s") -> str:
    return f"{n} {word}{'' if n == 1 else suffix}"


@dataclass(frozen=True)
class _Lane:
    """One worker process's share of a job: its done chunks, summed in SQL."""

    chunks: int
    run: float
    cpu: float
    first_start: float
    last_end: float


def _lanes(job: Job) -> list[_Lane]:
    """Per worker process, its done chunks' count, run and CPU seconds, first start and last
    end (seconds since the job started): one grouped query, whatever the job's size."""
    started = Value(job.started_at, output_field=DateTimeField())

    def since_start(column: str) -> Extract:
        return Extract(F(column) - started, "epoch", output_field=FloatField())

    rows = (
        job.chunks.filter(
            status=Chunk.Status.DONE, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by()
        .values("worker", "pid")
        .annotate(
            n=Count("id"),
            run=Sum(
                Extract(F("finished_at") - F("started_at"), "epoch", output_field=FloatField())
            ),
            cpu=Coalesce(Sum("cpu_seconds"), 0.0, output_field=FloatField()),
            first=Min(since_start("started_at")),
            last=Max(since_start("finished_at")),
        )
    )
    return [
        _Lane(
            chunks=row["n"],
            run=max(float(row["run"] or 0.0), 0.0),
            cpu=float(row["cpu"]),
            first_start=max(float(row["first"]), 0.0),
            last_end=float(row["last"]),
        )
        for row in rows
    ]


def _other_jobs_during(job: Job) -> int:
    """Other jobs, anybody's, that were running at some time while this one ran."""
    return (
        Job.objects.filter(started_at__lt=job.finished_at)
        .filter(Q(finished_at__gt=job.started_at) | Q(finished_at__isnull=True))
        .exclude(pk=job.pk)
        .count()
    )


def job_speedup_insight(job: Job) -> SpeedupInsight | None:
    """A succeeded job's speedup explained; None for any other job (no speedup)."""
    speedup, baseline, wall = job.speedup, job.speedup_baseline, job.wall_seconds
    if job.status != Job.Status.SUCCEEDED or speedup is None or baseline is None or not wall:
        return None
    lanes = _lanes(job)
    used = len(lanes)
    processes = max(job.parallelism or used, used, 1)
    one_process = job.baseline_seconds if job.baseline_seconds is not None else job.cpu_seconds
    insight = SpeedupInsight(
        speedup=speedup,
        baseline=baseline,
        baseline_seconds=one_process,
        baseline_job_id=job.baseline_job_id if baseline == scaling.BASELINE_MEASURED else None,
        wall_seconds=wall,
        parallelism_achieved=job.parallelism_achieved,
        efficiency=job.efficiency,
        processes_used=job.processes_used,
        processes=processes,
    )
    if not insight.explained or not lanes:
        return insight
    causes = _causes(job, lanes, processes=processes, wall=wall, one_process=one_process)
    return dataclasses.replace(insight, causes=causes)


def _causes(
    job: Job, lanes: list[_Lane], *, processes: int, wall: float, one_process: float
) -> list[Cause]:
    capacity = processes * wall
    chunks = sum(lane.chunks for lane in lanes)
    work = sum(lane.cpu for lane in lanes)
    per_chunk_work = work / chunks if chunks else 0.0
    last_end = min(max(lane.last_end for lane in lanes), wall)
    waiting = sum(max(lane.run - lane.cpu, 0.0) for lane in lanes)
    gaps = chunks - len(lanes)
    between = sum(max(lane.last_end - lane.first_start - lane.run, 0.0) for lane in lanes)
    tail = sum(max(last_end - lane.last_end, 0.0) for lane in lanes)
    fixed = sum(lane.first_start for lane in lanes) + len(lanes) * max(wall - last_end, 0.0)
    unused = (processes - len(lanes)) * wall
    first_out = min(lane.last_end for lane in lanes)
    found: list[tuple[str, str, float, str, str]] = []

    others = _other_jobs_during(job)
    sharers = (
        f"{_plural(others, 'other job')} ran on the workers meanwhile"
        if others
        else "no other job of Coreboard ran meanwhile: other programs, or I/O"
    )
    found.append(
        (
            "contention",
            "Chunks waiting for the CPU",
            waiting,
            f"Chunks ran {_seconds(waiting)} longer than their CPU time ({sharers}).",
            "The cores were shared: measure on a quieter machine, or ask for fewer "
            "processes than the machine has cores.",
        )
    )
    per_gap = between / gaps if gaps > 0 else 0.0
    found.append(
        (
            "overhead",
            "Between chunks (claiming, recording, dispatch)",
            between,
            f"{_plural(chunks, 'chunk')} did {_seconds(per_chunk_work)} of work each on "
            f"average, with {_seconds(per_gap)} between one and the next in a process.",
            "Use fewer, bigger chunks: at least "
            f"{_seconds(GOOD_CHUNK_SECONDS)} of work each, so the cost per chunk is small "
            "beside its work.",
        )
    )
    found.append(
        (
            "tail",
            "The tail: processes out of chunks while others finished",
            tail,
            f"The first process ran out of work {_seconds(last_end - first_out)} before "
            "the last chunk ended.",
            "Even out the chunks' work: more chunks than processes, of equal size "
            "(but each at least "
            f"{_seconds(GOOD_CHUNK_SECONDS)} of work), so the processes finish together.",
        )
    )
    found.append(
        (
            "fixed",
            "Start-up and finishing",
            fixed,
            "Before each process's first chunk (dispatch, start-up) and after the last "
            "chunk (combining the result).",
            "These are fixed costs: a short job shows a low speedup; jobs of a few seconds "
            "or more show the real one.",
        )
    )
    if job.total_chunks < processes:
        unused_detail = (
            f"It had {_plural(job.total_chunks, 'chunk')} for {processes} processes: "
            f"{_plural(processes - len(lanes), 'process', 'es')} had nothing to do."
        )
        unused_advice = (
            f"Split the work into at least {processes} chunks (several per process evens "
            "out the tail)."
        )
    else:
        unused_detail = (
            f"Only {_plural(len(lanes), 'worker process', 'es')} of {processes} ran its "
            "chunks: the others were busy with other jobs or not running."
        )
        unused_advice = (
            "Run it when the workers are free, or ask for the parallelism the workers can give."
        )
    found.append(("unused", "Processes with no chunk", unused, unused_detail, unused_advice))
    if job.baseline_seconds is not None:
        found.append(
            (
                "split",
                "Work the split added",
                max(work - one_process, 0.0),
                f"The chunks used {_seconds(work)} of CPU in all; the parallelism-1 run took "
                f"{_seconds(one_process)}.",
                "Each chunk repeats set-up work: make it cheaper, or use fewer chunks.",
            )
        )
    listed = [
        Cause(key, title, seconds, seconds / capacity, detail, advice)
        for key, title, seconds, detail, advice in found
        if capacity > 0 and seconds / capacity >= LISTED_SHARE
    ]
    return sorted(listed, key=lambda cause: -cause.seconds)
