"""A job kind that prints, logs and allocates (tests of chunk output and resources only;
COREBOARD_JOB_KINDS=tests.kinds_chatter). Importing this module registers the kind."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django import forms

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, Spec

NAME = "chatter"
logger = logging.getLogger("tests.kinds_chatter")


class ChatterForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=100_000, initial=2)
    lines = forms.IntegerField(min_value=0, max_value=100_000, initial=3)
    line_bytes = forms.IntegerField(min_value=1, max_value=2_000_000, initial=10)
    # Bytes allocated (and touched) while the chunk runs, then freed.
    alloc_bytes = forms.IntegerField(min_value=0, max_value=2_000_000_000, initial=0)
    # The chunk keeps running until this file exists (a test lets it go).
    hold_until = forms.CharField(required=False, initial="")
    log = forms.BooleanField(required=False, initial=False)


@register
class Chatter(JobKind):
    name = NAME
    label = "Chatter"
    description = "Prints, logs and allocates (tests only)."
    form_class = ChatterForm

    def split(self, params: Params) -> Sequence[Spec]:
        return [{"index": i, **params} for i in range(params["chunks"])]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        index = spec["index"]
        if spec["log"]:
            logger.warning("chunk %s says hello through logging", index)
        for line in range(spec["lines"]):
            head = f"line {line} of chunk {index} "
            print(head + "." * max(spec["line_bytes"] - len(head) - 1, 0))
        if spec["alloc_bytes"]:
            block = b"\x01" * spec["alloc_bytes"]
            time.sleep(0.05)
            del block
        if spec["hold_until"]:
            while not Path(spec["hold_until"]).exists():
                progress(0, 1)
                time.sleep(0.02)
        return {"lines": spec["lines"]}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, int]:
        return {"lines": sum(partial["lines"] for partial in partials)}
