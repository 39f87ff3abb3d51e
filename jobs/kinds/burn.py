"""burn: busy-spin for a fixed time per chunk, optionally failing; for demos, tests, benchmarks."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from django import forms

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec, grouped

MAX_CHUNKS = 100_000
MAX_MS = 300_000
PROGRESS_EVERY_S = 0.02


class InjectedFailure(RuntimeError):
    pass


class BurnForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=MAX_CHUNKS, initial=8)
    ms = forms.IntegerField(
        min_value=0, max_value=MAX_MS, initial=1000, label="Milliseconds per chunk"
    )
    fail_rate = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=0.0,
        required=False,
        help_text="Probability (0..1) that a chunk raises.",
    )

    def clean_fail_rate(self) -> float:
        return self.cleaned_data.get("fail_rate") or 0.0


@register
class Burn(JobKind):
    name = "burn"
    label = "Burn CPU"
    description = "Busy-spins each chunk for a fixed time; can inject failures."
    form_class = BurnForm

    def estimate_seconds(self, params: Params) -> float:
        return float(params["chunks"] * params["ms"] / 1000)

    def split(self, params: Params) -> Sequence[Spec]:
        return [
            {"index": i, "ms": params["ms"], "fail_rate": params["fail_rate"]}
            for i in range(params["chunks"])
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        fails = random.random() < spec["fail_rate"]  # noqa: S311 - fault injection, not crypto
        duration = spec["ms"] / 1000
        began = time.perf_counter()
        deadline = began + duration
        next_report = began
        iterations = 0
        while (now := time.perf_counter()) < deadline:
            iterations += 1
            if now >= next_report:
                progress(now - began, duration)
                next_report = now + PROGRESS_EVERY_S
                if fails and now - began >= duration / 2:
                    break
        if fails:
            raise InjectedFailure(f"burn: injected failure in chunk {spec['index']}")
        progress(duration, duration)
        return {"iterations": iterations}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, int]:
        return {
            "chunks": len(partials),
            "iterations": sum(partial["iterations"] for partial in partials),
        }

    def result_display(self, params: Params, result: Any) -> ResultDisplay:
        return ResultDisplay(
            figures=[
                ("Chunks burnt", grouped(result["chunks"])),
                ("Loop iterations", grouped(result["iterations"])),
            ]
        )
