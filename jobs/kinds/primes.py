"""primes: count the primes in [start, stop) with a segmented sieve in pure Python."""

from __future__ import annotations

from functools import lru_cache
from math import isqrt, log
from typing import Annotated

from jobs.kinds.base import Params, Progress, ResultDisplay, grouped
from jobs.kinds.function import Help, Range, kind, over_range

MAX_STOP = 10**11
MAX_RANGE = 10**10
MAX_CHUNKS = 100_000
SEGMENT = 1 << 18
# CPU seconds, measured on the reference machine (docs/job-kinds.md, "Estimates"): per
# number sieved, and per base prime crossed off in one segment.
SECONDS_PER_NUMBER = 2.1e-9
SECONDS_PER_PRIME_SEGMENT = 5.4e-7


@lru_cache(maxsize=8)
def base_primes(limit: int) -> tuple[int, ...]:
    """All primes <= limit (a plain sieve; limit is at most sqrt(MAX_STOP))."""
    if limit < 2:
        return ()
    sieve = bytearray(b"\x01") * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return tuple(i for i, flag in enumerate(sieve) if flag)


def count_primes(start: int, stop: int, progress: Progress | None = None) -> int:
    """Number of primes in [start, stop)."""
    start = max(start, 2)
    if stop <= start:
        return 0
    primes = base_primes(isqrt(stop - 1))
    total = 0
    for lo in range(start, stop, SEGMENT):
        hi = min(lo + SEGMENT, stop)
        size = hi - lo
        segment = bytearray(b"\x01") * size
        for p in primes:
            square = p * p
            if square >= hi:
                break
            first = max(square, (lo + p - 1) // p * p) - lo
            segment[first::p] = bytes(len(range(first, size, p)))
        total += segment.count(1)
        if progress is not None:
            progress(hi - start, stop - start)
    return total


def primes_display(params: Params, result: dict[str, int]) -> ResultDisplay:
    span = f"from {grouped(params['start'])} up to {grouped(params['stop'])} (exclusive)"
    return ResultDisplay(figures=[("Primes found", grouped(result["count"])), ("Range", span)])


def primes_seconds(params: Params) -> float:
    """Each segment crosses off every base prime up to √stop (about √stop / (ln √stop - 1)
    of them; fewer in the low segments, so this is an upper bound), and each chunk starts
    a segment of its own."""
    span = max(params["stop"] - max(params["start"], 2), 0)
    root = isqrt(max(params["stop"] - 1, 0))
    base = root / (log(root) - 1) if root > 2 else 1.0
    segments = span / SEGMENT + params["chunks"]
    return float(span * SECONDS_PER_NUMBER + segments * base * SECONDS_PER_PRIME_SEGMENT)


@kind(
    label="Count primes",
    split=over_range("stop", start="start", max_size=MAX_RANGE),
    combine="sum",
    display=primes_display,
    estimate_seconds=primes_seconds,
)
def primes(
    numbers: range,
    progress: Progress,
    start: Annotated[int, Range(0, MAX_STOP - 1)] = 0,
    stop: Annotated[int, Range(1, MAX_STOP), Help("Exclusive upper bound.")] = 600_000_000,
    chunks: Annotated[int, Range(1, MAX_CHUNKS)] = 12,
) -> dict[str, int]:
    """Counts the primes in [start, stop) with a segmented sieve, range split into chunks."""
    return {"count": count_primes(numbers.start, numbers.stop, progress)}
