"""Strong scaling, from wall times measured at several parallelisms: pure functions.

Speedup S(p) = T(1) / T(p) against the ideal p; efficiency S / p; Amdahl's law
S(p) = 1 / (f + (1 - f) / p) fitted for the serial fraction f; and the Karp-Flatt metric
e(p) = (1/S - 1/p) / (1 - 1/p), the serial fraction each point implies on its own. For
work that follows Amdahl's law exactly, e(p) is the same f at every p; an e(p) that grows
with p means overhead that grows with the processes (coordination, contention), not a
fixed serial part.

The scaling study (jobs/services/studies.py) and the benchmark (tests/benchmarks/scaling.py)
both compute their figures here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def speedup(t1: float, tp: float) -> float | None:
    """T(1) / T(p); None when a time is missing or not positive."""
    return t1 / tp if t1 > 0 and tp > 0 else None


def efficiency(s: float, p: int) -> float:
    return s / p


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
    point at p > 1.
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
    f = amdahl_fit(speedups)
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
    return ScalingAnalysis(points=points, serial_fraction=f)


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
