"""montecarlo_pi: estimate π from random points in the unit square, reproducibly."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Annotated, Any

from jobs.kinds.base import Params, Progress, ResultDisplay, grouped
from jobs.kinds.function import Help, Range, kind, seeded

MAX_SAMPLES = 2_000_000_000
MAX_CHUNKS = 100_000
PROGRESS_EVERY = 100_000
# CPU seconds per point drawn, measured on the reference machine (docs/job-kinds.md,
# "Estimates").
SECONDS_PER_SAMPLE = 8.3e-8


def pi_estimate(partials: Sequence[dict[str, int]]) -> dict[str, float | int]:
    inside = sum(p["inside"] for p in partials)
    samples = sum(p["samples"] for p in partials)
    share = inside / samples
    return {
        "estimate": 4 * share,
        "std_error": 4 * math.sqrt(share * (1 - share) / samples),
        "inside": inside,
        "samples": samples,
    }


def pi_display(result: Any) -> ResultDisplay:
    # Digits up to the standard error's first significant one, and one more.
    error = result["std_error"]
    digits = max(1, 1 - math.floor(math.log10(error))) if error > 0 else 6
    return ResultDisplay(
        figures=[
            ("Estimate of π", f"{result['estimate']:.{digits}f} ± {error:.{digits}f}"),
            ("Error from π", f"{result['estimate'] - math.pi:+.{digits}f}"),
            ("Points inside", f"{grouped(result['inside'])} of {grouped(result['samples'])}"),
        ]
    )


def pi_seconds(params: Params) -> float:
    """The chunks share `samples` points between them (seeded(share="samples"))."""
    return float(params["samples"] * SECONDS_PER_SAMPLE)


@kind(
    label="Monte Carlo π",
    split=seeded(share="samples"),
    combine=pi_estimate,
    display=pi_display,
    estimate_seconds=pi_seconds,
)
def montecarlo_pi(
    rng: random.Random,
    progress: Progress,
    samples: Annotated[int, Range(1, MAX_SAMPLES)] = 40_000_000,
    chunks: Annotated[int, Range(1, MAX_CHUNKS)] = 10,
    seed: Annotated[int, Range(0, 2**63 - 1), Help("Same seed, same estimate.")] = 1,
) -> dict[str, int]:
    """Estimates π from the share of random points in the unit square that fall inside
    the quarter circle. Each chunk draws from its own stream derived from the seed."""
    draw = rng.random
    inside = 0
    done = 0
    while done < samples:
        batch = min(PROGRESS_EVERY, samples - done)
        for _ in range(batch):
            x = draw()
            y = draw()
            if x * x + y * y <= 1.0:
                inside += 1
        done += batch
        progress(done, samples)
    return {"inside": inside, "samples": samples}
