"""The job-kind contract: plain code, no ORM, no channel layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.utils import pretty_name

Params = dict[str, Any]
Spec = dict[str, Any]
Progress = Callable[[float, float], None]


class UploadField(forms.IntegerField):
    """A parameter that names a file uploaded through `POST /api/uploads/`.

    The job's params keep the upload's id, as the person gave it. Only `split` sees more:
    Coreboard checks that the upload belongs to the job's owner and passes `split` the
    params with the id swapped for `{"id", "name", "size", "storage_name"}`; what `run`
    needs of it goes into the chunk specs. Kinds read the file with Django's storage API
    (`default_storage.open(storage_name)`), so workers on other machines can too.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("help_text", "A UTF-8 text file.")
        super().__init__(**kwargs)


class ListField(forms.Field):
    """A list parameter: one item per line in the browser (a textarea), a JSON array in the API.

    Each item is cleaned by `item_field` (an IntegerField, FloatField or CharField with the
    item's limits); blank lines are skipped; at most `max_items` items.
    """

    widget = forms.Textarea

    def __init__(
        self, *, item_field: forms.Field, max_items: int, min_items: int = 0, **kwargs: Any
    ) -> None:
        self.item_field = item_field
        self.max_items = max_items
        self.min_items = min_items
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("spellcheck", "false")

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[Any]:
        """Text (a form's lines) as the items' values; a list as it is."""
        if value in self.empty_values:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        if not isinstance(value, str):
            raise ValidationError("Must be a list: one item per line.", code="invalid")
        items: list[Any] = []
        errors: list[str] = []
        for number, line in enumerate(filter(None, map(str.strip, value.splitlines())), 1):
            try:
                items.append(self.item_field.to_python(line))
            except ValidationError as error:
                errors.append(_item_error(number, line, error))
        if errors:
            raise ValidationError(errors[:MAX_ITEM_ERRORS])
        return items

    def clean(self, value: Any) -> list[Any]:
        items = self.to_python(value)
        self.validate(items)
        if len(items) > self.max_items:
            raise ValidationError(f"At most {self.max_items} items, not {len(items)}.")
        if len(items) < self.min_items:
            raise ValidationError(f"At least {self.min_items} items, not {len(items)}.")
        cleaned: list[Any] = []
        errors: list[str] = []
        # The items of a JSON array must have their JSON type (to_python converted text).
        typed = not isinstance(value, str)
        for number, item in enumerate(items, start=1):
            wrong = json_type_error(self.item_field, item) if typed else None
            try:
                if wrong is not None:
                    raise ValidationError(wrong)
                cleaned.append(self.item_field.clean(item))
            except ValidationError as error:
                errors.append(_item_error(number, item, error))
        if errors:
            raise ValidationError(errors[:MAX_ITEM_ERRORS])
        self.run_validators(cleaned)
        return cleaned


# A list parameter's errors name at most this many of its items.
MAX_ITEM_ERRORS = 5


def _item_error(number: int, item: Any, error: ValidationError) -> str:
    return f"Item {number} ({item!r}): {' '.join(error.messages)}"


def json_type_error(field: forms.Field, value: Any) -> str | None:
    """Why `value` (decoded JSON) is the wrong type for `field`, or None when it is not.

    Django's fields coerce whatever they get (`CharField` calls `str()` on an object,
    `FloatField` takes `true`, `IntegerField` takes full-width digits in a string), so
    API input is checked against the JSON type each field stands for first.
    """
    if value is None:
        return "This field is required." if field.required else None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    # FloatField and DecimalField are IntegerField subclasses: test them first.
    if isinstance(field, forms.FloatField | forms.DecimalField):
        return None if number else f"Must be a JSON number, not {_json_type_name(value)}."
    if isinstance(field, forms.IntegerField):
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        if isinstance(value, float) and value.is_integer():
            return None
        return f"Must be a JSON integer, not {_json_type_name(value)}."
    if isinstance(field, forms.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, ListField):
        return (
            None
            if isinstance(value, list)
            else f"Must be a JSON array, not {_json_type_name(value)}."
        )
    if isinstance(field, forms.CharField | forms.ChoiceField):
        if isinstance(value, str):
            return None
        return f"Must be a JSON string, not {_json_type_name(value)}."
    if isinstance(value, dict | list):
        return f"Must be a single value, not {_json_type_name(value)}."
    return None


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a non-integer number" if isinstance(value, float) else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def params_from_form_values(fields: Mapping[str, forms.Field], data: Mapping[str, Any]) -> Params:
    """Parameters typed in a browser form (strings), as the JSON values they stand for.

    Raises ValidationError by field when a string is not a value of its field's type.
    """
    typed: Params = {}
    errors: dict[str, list[str]] = {}
    for name, value in data.items():
        field = fields.get(name)
        if field is None or not isinstance(value, str) or isinstance(field, forms.CharField):
            typed[name] = value
            continue
        try:
            typed[name] = field.to_python(value)
        except ValidationError as error:
            errors[name] = list(error.messages)
    if errors:
        raise ValidationError(errors)
    return typed


def params_with_defaults(fields: Mapping[str, forms.Field], data: Mapping[str, Any]) -> Params:
    """`data` with every omitted parameter that has an initial value in the form set to it,
    so API callers may leave out what the browser form prefills (the job stores the value
    used)."""
    filled = dict(data)
    for name, form_field in fields.items():
        if name in filled or form_field.initial is None:
            continue
        initial = form_field.initial
        filled[name] = initial() if callable(initial) else initial
    return filled


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
    `result_display` (the result as people read it; without one the page shows a table
    of its fields).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str] = ""
    form_class: ClassVar[type[forms.Form]]
    #: Media type of `preview`, or None when the kind has no live preview.
    preview_type: ClassVar[str | None] = None
    #: Seconds one chunk may run before its process is stopped and the chunk fails for
    #: good; None: COREBOARD_CHUNK_TIME_LIMIT_S (also the most a kind may ask for).
    time_limit_s: ClassVar[int | None] = None

    def clean_params(self, data: Mapping[str, Any]) -> Params:
        """Validate raw parameters with the kind's form; raise ValidationError by field."""
        if not isinstance(data, Mapping):
            raise ValidationError({NON_FIELD_ERRORS: ["Must be an object of parameters."]})
        fields = self.form_class.base_fields
        unknown = sorted(set(data) - set(fields))
        if unknown:
            expected = ", ".join(fields)
            raise ValidationError(
                {name: [f"Unknown parameter; expected one of: {expected}."] for name in unknown}
            )
        type_errors = {
            name: [error]
            for name, value in data.items()
            if (error := json_type_error(fields[name], value)) is not None
        }
        if type_errors:
            raise ValidationError(type_errors)
        form = self.form_class(data=params_with_defaults(fields, data))
        if not form.is_valid():
            raise ValidationError(form.errors.as_data())
        return dict(form.cleaned_data)

    def estimate_seconds(self, params: Params) -> float | None:
        """CPU seconds the whole job will take, when the kind can tell from its parameters
        (used by the per-person quota COREBOARD_QUOTA_CHUNK_S); None when it cannot."""
        return None

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

        An upload shows what `params` holds there (jobs.views.presentation passes its file name).
        A choice shows its label, not the value stored; large numbers are grouped by
        thousands (the history search reads `40,000,000` as `40000000`).
        """
        shown = []
        for name, form_field in self.form_class.base_fields.items():
            if name not in params:
                continue
            value = params[name]
            if isinstance(form_field, forms.ChoiceField):
                value = choice_labels(form_field).get(str(value), value)
            shown.append((str(form_field.label or pretty_name(name)), display_value(value)))
        return shown

    def preview(self, params: Params, spec: Spec, partial: Any) -> File | None:
        return None

    def result_file(self, params: Params, partials: Sequence[Any]) -> File | None:
        return None


LIST_SHOWN = 5


def choice_labels(field: forms.ChoiceField) -> dict[str, str]:
    """A choice field's labels by stored value (groups opened)."""
    labels: dict[str, str] = {}
    # The field normalises its choices to (value, label) pairs, a group's label to a list.
    choices = cast("list[tuple[Any, Any]]", list(field.choices))  # type: ignore[arg-type]
    for key, label in choices:
        if isinstance(label, list | tuple):
            labels.update((str(k), str(v)) for k, v in label)
        else:
            labels[str(key)] = str(label)
    return labels


# From five digits on, numbers are grouped by thousands: 40,000,000 but 2026.
GROUPED_FROM = 10_000


def display_value(value: Any) -> str:
    """One parameter value as people read it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int):
        return grouped(value) if abs(value) >= GROUPED_FROM else str(value)
    if isinstance(value, float):
        return f"{value:,.2f}" if GROUPED_FROM <= abs(value) < 1e15 else f"{value:g}"
    if isinstance(value, list):
        # A long list parameter (a ListField) shows its first items and its length.
        shown = ", ".join(display_value(item) for item in value[:LIST_SHOWN])
        return f"{shown}, … ({len(value)} items)" if len(value) > LIST_SHOWN else shown or "—"
    return str(value)


def grouped(value: int) -> str:
    """An integer with thousands separators: 664,579."""
    return f"{value:,}"
