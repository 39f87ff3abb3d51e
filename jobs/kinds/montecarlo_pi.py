"""montecarlo_pi: estimate π from random points in the unit square, reproducibly."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec, grouped

MAX_SAMPLES = 2_000_000_000
MAX_CHUNKS = 100_000
PROGRESS_EVERY = 100_000


class MonteCarloPiForm(forms.Form):
    samples = forms.IntegerField(min_value=1, max_value=MAX_SAMPLES, initial=40_000_000)
    chunks = forms.IntegerField(min_value=1, max_value=MAX_CHUNKS, initial=10)
    seed = forms.IntegerField(
        min_value=0, max_value=2**63 - 1, initial=1, help_text="Same seed, same estimate."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        samples, chunks = data.get("samples"), data.get("chunks")
        if samples is not None and chunks is not None and chunks > samples:
            raise ValidationError({"chunks": f"Must be at most Samples ({samples})."})
        return data


def chunk_stream(seed: int, index: int) -> random.Random:
    """An independent random stream per (seed, chunk index), the same in every process."""
    digest = hashlib.sha256(f"montecarlo_pi:{seed}:{index}".encode()).digest()
    # A simulation wants reproducible pseudo-randomness, not cryptographic randomness.
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311


@register
class MonteCarloPi(JobKind):
    name = "montecarlo_pi"
    label = "Monte Carlo π"
    description = (
        "Estimates π from the share of random points in the unit square that fall inside "
        "the quarter circle. Each chunk draws from its own stream derived from the seed."
    )
    form_class = MonteCarloPiForm

    def split(self, params: Params) -> Sequence[Spec]:
        samples, chunks, seed = params["samples"], params["chunks"], params["seed"]
        return [
            {
                "index": i,
                "seed": seed,
                "samples": samples * (i + 1) // chunks - samples * i // chunks,
            }
            for i in range(chunks)
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        draw = chunk_stream(spec["seed"], spec["index"]).random
        total = spec["samples"]
        inside = 0
        done = 0
        while done < total:
            batch = min(PROGRESS_EVERY, total - done)
            for _ in range(batch):
                x = draw()
                y = draw()
                if x * x + y * y <= 1.0:
                    inside += 1
            done += batch
            progress(done, total)
        return {"inside": inside, "samples": total}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, float | int]:
        inside = sum(p["inside"] for p in partials)
        samples = sum(p["samples"] for p in partials)
        share = inside / samples
        return {
            "estimate": 4 * share,
            "std_error": 4 * math.sqrt(share * (1 - share) / samples),
            "inside": inside,
            "samples": samples,
        }

    def result_display(self, params: Params, result: Any) -> ResultDisplay:
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
