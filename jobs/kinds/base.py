"""The job-kind contract: plain code, no ORM, no channel layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.utils import pretty_name

Params = dict[str, Any]
Spec = dict[str, Any]
Progress = Callable[[float, float], None]


class UploadField(forms.IntegerField):
    """A parameter that names a file uploaded through `POST /api/uploads/`.

    The form sees the upload's id; before `split` runs, Coreboard checks that the upload
    belongs to the job's owner and replaces the id with `{"id", "name", "size",
    "storage_name"}`. Kinds read the file with Django's storage API
    (`default_storage.open(storage_name)`), so workers on other machines can too.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("help_text", "A UTF-8 text file.")
        super().__init__(**kwargs)


@dataclass(frozen=True)
class ResultDisplay:
    """How a job page shows a kind's result: labelled figures, then an optional table."""

    figures: list[tuple[str, str]] = field(default_factory=list)
    table_caption: str = ""
    table_columns: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class File:
    """A file a kind produces: a job's result file, or a chunk's live preview."""

    name: str
    content_type: str
    data: bytes


class JobKind:
    """Base class for a job kind.

    A kind turns validated parameters into chunk specs (`split`), runs one chunk in a
    worker process (`run`, calling `progress(done, total)` as it goes; that call is also
    where a cancelled chunk stops) and folds the partial results into the job result
    (`combine`). Specs, partial results and results must be JSON-serialisable.

    Optional: `preview` (a picture of one finished chunk, shown while the job runs),
    `result_file` (a file kept with the job, e.g. a PNG), `finishes_job` (early exit:
    the first partial for which it is true ends the job successfully) and
    `result_display` (the result as people read it; the raw JSON is shown without one).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str] = ""
    form_class: ClassVar[type[forms.Form]]
    #: Media type of `preview`, or None when the kind has no live preview.
    preview_type: ClassVar[str | None] = None

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

    def upload_fields(self) -> list[str]:
        return [
            name
            for name, field in self.form_class.base_fields.items()
            if isinstance(field, UploadField)
        ]

    def split(self, params: Params) -> Sequence[Spec]:
        raise NotImplementedError

    def run(self, spec: Spec, progress: Progress) -> Any:
        raise NotImplementedError

    def combine(self, params: Params, partials: Sequence[Any]) -> Any:
        raise NotImplementedError

    def finishes_job(self, partial: Any) -> bool:
        return False

    def result_display(self, params: Params, result: Any) -> ResultDisplay | None:
        return None

    def params_display(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Parameters as `(form label, value)` in the form's order, without internal keys.

        An upload shows its file name. Numbers are written plainly (no thousands
        separators), so the history search finds what the page shows.
        """
        shown = []
        for name, form_field in self.form_class.base_fields.items():
            if name not in params:
                continue
            shown.append((str(form_field.label or pretty_name(name)), display_value(params[name])))
        return shown

    def preview(self, params: Params, spec: Spec, partial: Any) -> File | None:
        return None

    def result_file(self, params: Params, partials: Sequence[Any]) -> File | None:
        return None


def display_value(value: Any) -> str:
    """One parameter value as people read it."""
    if isinstance(value, Mapping) and "name" in value:
        return str(value["name"])
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def grouped(value: int) -> str:
    """An integer with thousands separators: 664,579."""
    return f"{value:,}"
