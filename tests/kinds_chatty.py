"""A job kind that prints slowly (COREBOARD_JOB_KINDS=tests.kinds_chatty): a chunk prints
`lines` lines, `ms` apart, each with the time it was printed, so a test can watch a chunk's
output reach the job page while the chunk still runs, and say how late it came.

The suite's shared worker lacks it; a test starts a worker that has it. Importing this
module registers the kind.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django import forms

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, Spec

NAME = "chatty"


class ChattyForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=100, initial=1)
    lines = forms.IntegerField(min_value=1, max_value=1000, initial=10)
    ms = forms.IntegerField(min_value=0, max_value=10_000, initial=500)


@register
class Chatty(JobKind):
    name = NAME
    label = "Chatty"
    description = "Prints `lines` lines per chunk, `ms` apart (tests only)."
    form_class = ChattyForm

    def split(self, params: Params) -> Sequence[Spec]:
        return [
            {"index": i, "lines": params["lines"], "ms": params["ms"]}
            for i in range(params["chunks"])
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        for line in range(1, spec["lines"] + 1):
            print(f"line {line} of chunk {spec['index']} printed at {time.time():.3f}", flush=True)
            progress(line, spec["lines"])
            time.sleep(spec["ms"] / 1000)
        return {"lines": spec["lines"]}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, int]:
        return {"lines": sum(partial["lines"] for partial in partials)}
