"""The job-kind contract: plain code, no ORM, no channel layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

Params = dict[str, Any]
Spec = dict[str, Any]
Progress = Callable[[float, float], None]


class JobKind:
    """Base class for a job kind.

    A kind turns validated parameters into chunk specs (`split`), runs one chunk in a
    worker process (`run`, calling `progress(done, total)` as it goes; that call is also
    where a cancelled chunk stops) and folds the partial results into the job result
    (`combine`). Results must be JSON-serialisable.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str] = ""
    form_class: ClassVar[type[forms.Form]]

    def clean_params(self, data: Mapping[str, Any]) -> Params:
        """Validate raw parameters with the kind's form; raise ValidationError by field."""
        if not isinstance(data, Mapping):
            raise ValidationError({NON_FIELD_ERRORS: ["Must be an object of parameters."]})
        form = self.form_class(data=data)
        unknown = sorted(set(data) - set(form.fields))
        if unknown:
            expected = ", ".join(form.fields)
            raise ValidationError(
                {name: [f"Unknown parameter; expected one of: {expected}."] for name in unknown}
            )
        if not form.is_valid():
            raise ValidationError(form.errors.as_data())
        return dict(form.cleaned_data)

    def split(self, params: Params) -> Sequence[Spec]:
        raise NotImplementedError

    def run(self, spec: Spec, progress: Progress) -> Any:
        raise NotImplementedError

    def combine(self, params: Params, partials: Sequence[Any]) -> Any:
        raise NotImplementedError
