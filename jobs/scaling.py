"""The figures of parallel runs, defined once: one job's speedup, parallelism achieved and
efficiency, and strong scaling over several runs. Pure arithmetic, in Python and (for the
job's figures) as the SQL expressions of the same formulas.

One job (every surface reads these: the job page, history, compare, the overview, the API,
the CLI, the CSV export and the scaling study):

- *speedup* = the time one process would take ÷ wall time, for a succeeded job. The time
  one process would take is the best baseline there is: the wall time of a measured
  parallelism-1 run of the same kind and parameters (`BASELINE_MEASURED`), else the sum of
  the job's chunks' CPU time (`BASELINE_CPU`); the figure always says which.
- *parallelism achieved* = CPU time ÷ wall time: the cores its chunks kept busy on average.
  Not a speedup: work that waits for the CPU, or a split that adds work, moves the two apart.
- *efficiency* = speedup ÷ processes used.

Strong scaling (a study's runs at p = 1, 2, 4, …): S(p) = T(1) / T(p) against the ideal p,
which is the job's speedup with its study's parallelism-1 run as the baseline; efficiency
S / p; Amdahl's law S(p) = 1 / (f + (1 - f) / p) fitted for the serial fraction f (from at
least AMDAHL_MIN_POINTS measured levels); and the Karp-Flatt metric
e(p) = (1/S - 1/p) / (1 - 1/p), the serial fraction each point implies on its own. For work
that follows Amdahl's law exactly, e(p) is the same f at every p; an e(p) that grows with p
means overhead that grows with the processes (coordination, contention), not a fixed serial
part.

The scaling study (jobs/services/studies.py) and the benchmark (tests/benchmarks/scaling.py)
both compute their figures here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.db.models import (
    Case,
    ExpressionWrapper,
    F,
    FloatField,
    Q,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Extract, NullIf

# --- one job's figures --------------------------------------------------------------------------

# Where a job's "time one process would take" comes from (its `speedup_baseline`).
BASELINE_MEASURED: Literal["measured"] = "measured"
BASELINE_CPU: Literal["cpu"] = "cpu"
Baseline = Literal["measured", "cpu"]


@dataclass(frozen=True)
class Figure:
    """A figure's one name (API field, CSV column), label (pages, CLI) and definition."""

    key: str
    label: str
    definition: str


WALL = Figure("wall_seconds", "Wall time", "Started to finished, in seconds.")
SPEEDUP = Figure(
    "speedup",
    "Speedup",
    "Time one process would take ÷ wall time, for a succeeded job: the wall time of a "
    "measured parallelism-1 run of the same kind and parameters (speedup_baseline "
    "'measured'), else the sum of its chunks' CPU time ('cpu').",
)
PARALLELISM_ACHIEVED = Figure(
    "parallelism_achieved",
    "Parallelism achieved",
    "CPU time ÷ wall time: the cores its chunks kept busy on average (not a speedup).",
)
EFFICIENCY = Figure("efficiency", "Efficiency", "Speedup ÷ processes used.")
PROCESSES_USED = Figure(
    "processes_used",
    "Processes used",
    "Worker processes that ran its done chunks, at most its parallelism (succeeded jobs).",
)
# How each baseline reads in a sentence ("… against <text>").
BASELINE_TEXT: dict[str, str] = {
    BASELINE_MEASURED: "a measured parallelism-1 run of the same parameters",
    BASELINE_CPU: "its chunks' CPU time (no parallelism-1 run of the same parameters)",
}


def ratio(numerator: Any, denominator: Any, *, sql: bool) -> Any:
    """numerator / denominator; None (SQL: null) when either is missing or the divisor 0."""
    if sql:
        divisor = NullIf(Cast(denominator, FloatField()), Value(0.0))
        return ExpressionWrapper(numerator / divisor, output_field=FloatField())
    return numerator / denominator if numerator is not None and denominator else None


def wall_seconds_sql() -> Any:
    """finished_at - started_at in seconds; null until both are set."""
    return Cast(
        Extract(F("finished_at") - F("started_at"), "epoch", output_field=FloatField()),
        FloatField(),
    )


def job_speedup(
    *, succeeded: Any, baseline_seconds: Any, cpu_seconds: Any, wall_seconds: Any, sql: bool
) -> Any:
    """SPEEDUP: (baseline_seconds, else cpu_seconds) / wall_seconds for a succeeded job.
    In SQL `succeeded` is a condition (Q) and the others are expressions."""
    if sql:
        one_process = Coalesce(baseline_seconds, cpu_seconds)
        return Case(
            When(succeeded, then=ratio(one_process, wall_seconds, sql=True)),
            default=None,
            output_field=FloatField(),
        )
    if not succeeded:
        return None
    one_process = baseline_seconds if baseline_seconds is not None else cpu_seconds
    return ratio(one_process, wall_seconds, sql=False)


def job_speedup_baseline(*, speedup: Any, baseline_seconds: Any, sql: bool) -> Any:
    """Which baseline a job's speedup was measured against (None: it has no speedup). In
    SQL, `speedup` and `baseline_seconds` name the columns."""
    if sql:
        return Case(
            When(Q(**{f"{speedup}__isnull": True}), then=None),
            When(Q(**{f"{baseline_seconds}__isnull": False}), then=Value(BASELINE_MEASURED)),
            default=Value(BASELINE_CPU),
            output_field=TextField(),
        )
    if speedup is None:
        return None
    return BASELINE_MEASURED if baseline_seconds is not None else BASELINE_CPU


def job_parallelism_achieved(*, cpu_seconds: Any, wall_seconds: Any, sql: bool) -> Any:
    """PARALLELISM_ACHIEVED: cpu_seconds / wall_seconds."""
    return ratio(cpu_seconds, wall_seconds, sql=sql)


def job_efficiency(*, speedup: Any, processes_used: Any, sql: bool) -> Any:
    """EFFICIENCY: speedup / processes_used."""
    return ratio(speedup, processes_used, sql=sql)


def job_processes_used(*, processes: int, parallelism: int) -> int | None:
    """PROCESSES_USED from the distinct worker processes that ran a job's done chunks: a
    job's slots may move between processes over its run (a slot yields, another is sent),
    so more processes than its parallelism never ran at once."""
    if processes <= 0:
        return None
    return min(processes, parallelism) if parallelism > 0 else processes


# --- strong scaling over several runs ------------------------------------------------------------

# Amdahl's law has one unknown: two levels (1 and p) determine it exactly, whatever the
# work, so a ceiling drawn from them is no fit at all. A third level is the first check.
AMDAHL_MIN_POINTS = 3


def speedup(t1: float, tp: float) -> float | None:
    """T(1) / T(p) (a job's SPEEDUP with a measured baseline); None when a time is missing
    or not positive."""
    return ratio(t1, tp, sql=False) if t1 > 0 and tp > 0 else None


def efficiency(s: float, p: int) -> float:
    """EFFICIENCY: speedup / processes."""
    return ratio(s, p, sql=False)  # type: ignore[no-any-return]


def karp_flatt(s: float, p: int) -> float | None:
    """The experimentally determined serial fraction at `p` processes (None at p = 1)."""
    if p <= 1 or s <= 0:
        return None
    return (1 / s - 1 / p) / (1 - 1 / p)


def amdahl_speedup(f: float, p: int) -> float:
    """The speedup Amdahl's law predicts at `p` processes for serial fraction `f`."""
    return 1 / (f + (1 - f) / p)


def amdahl_fit(speedups: Mapping[int, float]) -> float | None:
    """The serial fraction f whose Amdahl curve fits the measured speedups best.

    1/S = f + (1 - f)/p is linear in f: 1/S - 1/p = f · (1 - 1/p). Least squares over the
    points with p > 1 gives f = Σ x·y / Σ x² with x = 1 - 1/p, y = 1/S - 1/p, clamped to
    [0, 1] (a superlinear run would otherwise give a negative fraction). None without a
    point at p > 1 (scaling_analyse asks for AMDAHL_MIN_POINTS levels before it fits).
    """
    sxy = sxx = 0.0
    for p, s in speedups.items():
        if p <= 1 or s <= 0:
            continue
        x = 1 - 1 / p
        sxy += x * (1 / s - 1 / p)
        sxx += x * x
    if sxx == 0:
        return None
    return min(max(sxy / sxx, 0.0), 1.0)


@dataclass(frozen=True)
class ScalingPoint:
    parallelism: int
    wall_seconds: float | None
    speedup: float | None
    ideal_speedup: float
    efficiency: float | None
    karp_flatt: float | None
    amdahl_speedup: float | None


@dataclass(frozen=True)
class ScalingAnalysis:
    points: list[ScalingPoint]
    serial_fraction: float | None
    # Why there is no fit (None when there is one).
    fit_note: str | None = None

    @property
    def max_speedup(self) -> float | None:
        """Amdahl's ceiling 1/f for infinitely many processes (None for f = 0 or no fit)."""
        f = self.serial_fraction
        return 1 / f if f else None


def scaling_analyse(walls: Mapping[int, float | None]) -> ScalingAnalysis:
    """Every figure for wall times by parallelism; points without a time (a run not
    finished) keep their place with empty figures. Speedups need the time at p = 1."""
    t1 = walls.get(1)
    speedups: dict[int, float] = {}
    for p, wall in walls.items():
        s = speedup(t1, wall) if t1 is not None and wall is not None else None
        if s is not None:
            speedups[p] = s
    f = amdahl_fit(speedups) if len(speedups) >= AMDAHL_MIN_POINTS else None
    points = [
        ScalingPoint(
            parallelism=p,
            wall_seconds=walls[p],
            speedup=speedups.get(p),
            ideal_speedup=float(p),
            efficiency=efficiency(speedups[p], p) if p in speedups else None,
            karp_flatt=karp_flatt(speedups[p], p) if p in speedups else None,
            amdahl_speedup=amdahl_speedup(f, p) if f is not None else None,
        )
        for p in sorted(walls)
    ]
    return ScalingAnalysis(
        points=points, serial_fraction=f, fit_note=_fit_note(sorted(walls), speedups, f)
    )


def _fit_note(levels: list[int], speedups: Mapping[int, float], f: float | None) -> str | None:
    """Why a study shows no Amdahl fit (None when it shows one)."""
    if f is not None:
        return None
    if len(levels) >= AMDAHL_MIN_POINTS:
        return (
            f"No Amdahl fit yet: it needs speedups at {AMDAHL_MIN_POINTS} or more "
            f"parallelisms; {len(speedups)} of this study's {len(levels)} are measured."
        )
    return (
        f"No Amdahl fit: it needs speedups at {AMDAHL_MIN_POINTS} or more parallelisms, and "
        f"this study has {len(levels)} (parallelism {' and '.join(map(str, levels))}). "
        "Two fit a serial fraction exactly, whatever the work, so the ceiling it gives would "
        "be a guess. A machine with more worker processes gives a study more levels."
    )


def scaling_levels(processes: int) -> list[int]:
    """1, 2, 4, … up to `processes`, and `processes` itself when not a power of two."""
    levels = []
    p = 1
    while p <= processes:
        levels.append(p)
        p *= 2
    if processes >= 1 and levels[-1] != processes:
        levels.append(processes)
    return levels
