"""A job kind that only some test workers have (COREBOARD_JOB_KINDS=tests.kinds_probe).

The suite's shared worker lacks it, so tests of kind routing and capacity decide which
workers can run it. Importing this module registers the kind.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django import forms

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, Spec

NAME = "probe"


class ProbeForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=1000, initial=4)
    ms = forms.IntegerField(min_value=0, max_value=10_000, initial=100)


@register
class Probe(JobKind):
    name = NAME
    label = "Probe"
    description = "Sleeps `ms` per chunk (tests only)."
    form_class = ProbeForm

    def split(self, params: Params) -> Sequence[Spec]:
        return [{"index": i, "ms": params["ms"]} for i in range(params["chunks"])]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        end = time.monotonic() + spec["ms"] / 1000
        while time.monotonic() < end:
            progress(0, 1)
            time.sleep(min(0.02, max(end - time.monotonic(), 0)))
        return {"index": spec["index"]}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, int]:
        return {"chunks": len(partials)}
