"""`primes` under another name, for `make bench`: the coarse figures run it at parallelism 1
on a worker of exactly one process, which runs nothing else (a kind routes to its own
queue), beside `multiprocessing.Pool(1)` in the same rounds."""

from __future__ import annotations

from jobs.kinds import register
from jobs.kinds.function import over_range
from jobs.kinds.function.build import function_kind
from jobs.kinds.primes import MAX_RANGE, primes, primes_display, primes_seconds

NAME = "primes_one_process"

register(
    function_kind(
        primes,
        name=NAME,
        label="Count primes (bench: one process)",
        split=over_range("stop", start="start", max_size=MAX_RANGE),
        combine="sum",
        display=primes_display,
        estimate_seconds=primes_seconds,
    )
)
