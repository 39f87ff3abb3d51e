"""primes: count the primes in [start, stop) with a segmented sieve in pure Python."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from math import isqrt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec, grouped

MAX_STOP = 10**11
MAX_RANGE = 10**10
MAX_CHUNKS = 100_000
SEGMENT = 1 << 18


class PrimesForm(forms.Form):
    start = forms.IntegerField(min_value=0, max_value=MAX_STOP - 1, initial=0)
    stop = forms.IntegerField(
        min_value=1, max_value=MAX_STOP, initial=600_000_000, help_text="Exclusive upper bound."
    )
    chunks = forms.IntegerField(min_value=1, max_value=MAX_CHUNKS, initial=12)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, stop, chunks = data.get("start"), data.get("stop"), data.get("chunks")
        if start is None or stop is None:
            return data
        if stop <= start:
            raise ValidationError({"stop": f"Must be greater than Start ({start})."})
        if stop - start > MAX_RANGE:
            raise ValidationError({"stop": f"Stop minus Start must be at most {MAX_RANGE:,}."})
        if chunks is not None and chunks > stop - start:
            raise ValidationError(
                {"chunks": f"Must be at most the size of the range ({stop - start})."}
            )
        return data


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


@register
class Primes(JobKind):
    name = "primes"
    label = "Count primes"
    description = (
        "Counts the primes in [start, stop) with a segmented sieve, range split into chunks."
    )
    form_class = PrimesForm

    def split(self, params: Params) -> Sequence[Spec]:
        start, stop, chunks = params["start"], params["stop"], params["chunks"]
        bounds = [start + (stop - start) * i // chunks for i in range(chunks + 1)]
        return [{"start": bounds[i], "stop": bounds[i + 1]} for i in range(chunks)]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        return {"count": count_primes(spec["start"], spec["stop"], progress)}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, int]:
        return {"count": sum(partial["count"] for partial in partials)}

    def result_display(self, params: Params, result: Any) -> ResultDisplay:
        span = f"from {grouped(params['start'])} up to {grouped(params['stop'])} (exclusive)"
        return ResultDisplay(figures=[("Primes found", grouped(result["count"])), ("Range", span)])
