"""Job kinds that misbehave, for the stop path's tests (COREBOARD_JOB_KINDS=tests.kinds_stop).

`spin`: chunks that never call `progress` (`while True: pass`) unless told to finish;
`notjson`: a partial result with a set inside. Importing this module registers both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, Spec

SPIN = "spin"
NOT_JSON = "notjson"


class SpinForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=100, initial=2)
    # Chunks from this index on finish at once (the others spin for ever).
    finish_from = forms.IntegerField(min_value=0, max_value=100, initial=100)


@register
class Spin(JobKind):
    name = SPIN
    label = "Spin"
    description = "Spins without ever calling progress (tests only)."
    form_class = SpinForm

    def split(self, params: Params) -> Sequence[Spec]:
        return [{"index": i, "spin": i < params["finish_from"]} for i in range(params["chunks"])]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        while spec["spin"]:
            pass
        return {"index": spec["index"]}

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, int]:
        return {"chunks": len(partials)}


class NotJSONForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=100, initial=1)


@register
class NotJSON(JobKind):
    name = NOT_JSON
    label = "Not JSON"
    description = "Returns a partial with a set in it (tests only)."
    form_class = NotJSONForm

    def split(self, params: Params) -> Sequence[Spec]:
        return [{"index": i} for i in range(params["chunks"])]

    def run(self, spec: Spec, progress: Progress) -> dict[str, Any]:
        return {"counts": [1, 2, {"seen": {spec["index"]}}]}

    def combine(self, params: Params, partials: Sequence[Any]) -> int:
        return len(partials)
