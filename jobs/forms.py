from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from jobs import kinds
from jobs.history import HISTORY_DEFAULT_SORT, HISTORY_SORTS
from jobs.kinds.base import JobKind, params_from_form_values
from jobs.models import Job
from jobs.options import (
    chunk_time_limit_field,
    may_submit_urgent,
    parallelism_field,
    priority_field,
)
from jobs.services.notifications import MIN_MINUTES_MAX

PARAMS_PREFIX = "params"


class UploadWidget(forms.ClearableFileInput):
    """A file input for an upload parameter; the view stores the file and posts its id."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        return data.get(name)

    def format_value(self, value: Any) -> None:
        return None


class JobOptionsForm(forms.Form):
    """Options every job has, shown beside the kind's own parameter form.

    Its fields (`parallelism`, `chunk_time_limit_s` within `kind`'s limit, and `priority`,
    offering urgent only to a `user` staff allowed) are jobs.options' one definitions, which
    the services validate every job's with (jobs.services.jobs.job_plan), whether it came
    from a page or the API.
    """

    def __init__(
        self, *args: Any, kind: JobKind | None = None, user: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["parallelism"] = parallelism_field()
        self.fields["chunk_time_limit_s"] = chunk_time_limit_field(kind)
        self.fields["priority"] = priority_field(may_urgent=may_submit_urgent(user))


HISTORY_SORT_CHOICES = [(key, sort.label) for key, sort in HISTORY_SORTS.items()]


class UsernameField(forms.CharField):
    """A username typed in full; cleans to that user, or None when left empty."""

    default_error_messages = {"unknown": "No user named “%(value)s”."}

    def clean(self, value: Any) -> Any:
        # CharField's own cleaning first: it refuses NUL characters, which PostgreSQL would.
        username = super().clean(value)
        if not username:
            return None
        users = get_user_model()._default_manager
        user = users.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise ValidationError(
                self.error_messages["unknown"], code="unknown", params={"value": username}
            )
        return user


def _owner_field() -> UsernameField:
    return UsernameField(
        label="Owner",
        required=False,
        max_length=150,
        widget=forms.TextInput(
            attrs={"placeholder": "username", "autocomplete": "off", "spellcheck": "false"}
        ),
    )


def _kind_field(kind_names: list[tuple[str, str]], *, required: bool) -> forms.ChoiceField:
    empty = [("", "Any kind")] if not required else [("", "Choose a kind")]
    return forms.ChoiceField(label="Kind", choices=[*empty, *kind_names], required=required)


class HistoryFilterForm(forms.Form):
    """The history page's filters (GET), shared by its CSV export.

    Every field is optional. A field with an error filters nothing (see `filters`), so a bad
    value in an address shows its message above the list instead of failing the page. The
    owner field exists for staff only: other people see their own jobs whatever it says.
    """

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "id, kind or parameter"}),
    )
    status = forms.ChoiceField(
        label="Status", choices=[("", "Any status"), *Job.Status.choices], required=False
    )
    created_from = forms.DateField(
        label="Created from",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    created_to = forms.DateField(
        label="Created to",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    sort = forms.ChoiceField(label="Sort by", choices=HISTORY_SORT_CHOICES, required=False)
    # The jobs of one sweep (its page links here); without it a sweep is one row.
    sweep = forms.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput
    )

    def __init__(
        self, *args: Any, kind_names: list[tuple[str, str]], show_owner: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"] = _kind_field(kind_names, required=False)
        order = ["q", "status", "kind"]
        if show_owner:
            self.fields["owner"] = _owner_field()
            order.append("owner")
        self.order_fields([*order, "created_from", "created_to", "sort", "sweep"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", f"Must be on or after the “from” date ({start:%Y-%m-%d}).")
        return cleaned

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for selectors.job_history from the fields that are valid."""
        self.is_valid()
        data = self.cleaned_data
        return {
            "q": data.get("q") or "",
            "status": data.get("status") or None,
            "kind": data.get("kind") or None,
            "owner": data.get("owner"),
            "created_from": data.get("created_from"),
            "created_to": data.get("created_to"),
            "sort": data.get("sort") or HISTORY_DEFAULT_SORT,
            "sweep": data.get("sweep"),
        }


def history_filter_form(data: Any, *, user: Any) -> HistoryFilterForm:
    """The history's filters as `user` may use them (the owner field for staff only), with
    every installed kind; for the page, its CSV export and the API's."""
    kind_names = [(kind.name, kind.label) for kind in kinds.all_kinds()]
    return HistoryFilterForm(data, kind_names=kind_names, show_owner=user.is_staff)


class CompareForm(forms.Form):
    """Which runs the compare page charts: one kind, and for staff optionally one owner."""

    def __init__(
        self, *args: Any, kind_names: list[tuple[str, str]], show_owner: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"] = _kind_field(kind_names, required=True)
        if show_owner:
            self.fields["owner"] = _owner_field()


class UploadForm(forms.Form):
    """The uploads page's file field; jobs.services.upload_create checks the file itself."""

    file = forms.FileField(
        label="Text file",
        allow_empty_file=True,  # the service says why an empty file is refused
        help_text="UTF-8 text, for a job kind that reads a file (e.g. Word count).",
    )


class NotificationSettingsForm(forms.Form):
    """What a person wants to hear about (jobs.services.notifications)."""

    email = forms.EmailField(
        required=False,
        label="E-mail address",
        help_text="Notifications by e-mail go here; leave it empty for none.",
    )
    on_succeeded = forms.BooleanField(required=False, label="A job succeeded")
    on_failed = forms.BooleanField(required=False, label="A job failed")
    on_cancelled = forms.BooleanField(required=False, label="A job was cancelled")
    min_minutes = forms.IntegerField(
        min_value=0,
        max_value=MIN_MINUTES_MAX,
        initial=0,
        label="Only jobs longer than (minutes)",
        help_text="0: every job.",
    )


class WebhookForm(forms.Form):
    url = forms.URLField(
        max_length=2000,
        label="Webhook URL",
        assume_scheme="https",
        help_text="Gets a signed JSON POST when one of your jobs ends as chosen above.",
    )


# --- schedules ----------------------------------------------------------------------------------

# What a schedule's body may hold (the API's JSON, the page's form after its own parsing), with
# the JSON type of each; jobs.services.schedules validates the values.
SCHEDULE_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "name": (str, "a string"),
    "kind": (str, "a string"),
    "params": (dict, "an object"),
    "parallelism": ((int, type(None)), "an integer or null"),
    "chunk_time_limit_s": ((int, type(None)), "an integer or null"),
    "cron": ((str, type(None)), "a string or null"),
    "every": ((int, type(None)), "an integer or null"),
    "unit": ((str, type(None)), "a string or null"),
    "timezone": (str, "a string"),
    "enabled": (bool, "true or false"),
    "skip_if_active": (bool, "true or false"),
}
SCHEDULE_UNITS = ("seconds", "minutes", "hours", "days")


def schedule_input(data: Any, *, current: dict[str, Any]) -> dict[str, Any]:
    """A schedule's fields from `data` over `current` (the defaults, or a stored schedule's
    values for a partial change): errors by field, naming the expected type, for unknown
    fields and wrong JSON types (a bool is no integer). Returns the merged values."""
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {}
    for name in sorted(set(data) - set(SCHEDULE_FIELDS)):
        errors[name] = [f"Unknown field; expected some of: {', '.join(SCHEDULE_FIELDS)}."]
    for name, value in data.items():
        if name not in SCHEDULE_FIELDS:
            continue
        types, words = SCHEDULE_FIELDS[name]
        is_bool = isinstance(value, bool)
        if not isinstance(value, types) or (is_bool and bool not in _as_tuple(types)):
            errors[name] = [f"Must be {words}."]
    if errors:
        raise ValidationError(errors)
    merged = {**current, **data}
    # One timing: giving a cron expression clears an interval, and the other way round.
    if data.get("cron"):
        merged["every"] = data.get("every")
    elif data.get("every") is not None:
        merged["cron"] = data.get("cron")
    return merged


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


class ScheduleForm(forms.Form):
    """The schedules page's form: a schedule's timing and switches (its kind and parameters
    come from a job, or stay those of the schedule being edited)."""

    name = forms.CharField(max_length=120)
    how = forms.ChoiceField(
        label="Runs", choices=[("every", "Every …"), ("cron", "By a cron expression")]
    )
    every = forms.IntegerField(required=False, min_value=1)
    unit = forms.ChoiceField(required=False, choices=[(u, u) for u in SCHEDULE_UNITS])
    cron = forms.CharField(
        required=False,
        max_length=120,
        label="Cron expression",
        help_text="minute hour day-of-month month day-of-week, e.g. 0 3 * * *",
    )
    timezone = forms.CharField(max_length=64, initial="UTC", label="Time zone")
    enabled = forms.BooleanField(required=False, initial=True)
    skip_if_active = forms.BooleanField(
        required=False, label="Skip a run while the previous one is still active"
    )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        how = cleaned.get("how")
        if how == "every" and cleaned.get("every") is None and "every" not in self.errors:
            self.add_error("every", "How many units between runs.")
        if how == "cron" and not cleaned.get("cron") and "cron" not in self.errors:
            self.add_error("cron", "A cron expression, e.g. 0 3 * * *.")
        return cleaned

    def schedule_data(self) -> dict[str, Any]:
        """The cleaned values as the service's fields (one timing, the other null)."""
        data = dict(self.cleaned_data)
        how = data.pop("how")
        if how == "cron":
            data["every"] = None
        else:
            data["cron"] = None
            data["unit"] = data.get("unit") or "minutes"
        return data


# How the sweep form separates a parameter's values.
SWEEP_VALUE_SEPARATOR = ","


class SweepParamsForm(forms.Form):
    """A kind's parameters, each taking one value or several separated by commas: a new
    job's form in sweep mode. `grid_and_params()` types each value as the job form would
    (jobs.kinds.base.params_from_form_values); the kind validates them per run when the
    sweep is created. A value that itself holds a comma can be swept through the API."""

    def __init__(self, *args: Any, kind: JobKind, initial_params: Any = None, **kwargs: Any):
        kwargs.setdefault("prefix", PARAMS_PREFIX)
        super().__init__(*args, **kwargs)
        self.kind_fields = kind.form_class.base_fields
        for name, field in self.kind_fields.items():
            initial = field.initial() if callable(field.initial) else field.initial
            if initial_params and name in initial_params:
                initial = initial_params[name]
            self.fields[name] = forms.CharField(
                label=field.label or name.replace("_", " ").capitalize(),
                required=field.required,
                initial="" if initial is None else str(initial),
                help_text=(f"{field.help_text} " if field.help_text else "")
                + "One value, or several separated by commas to sweep it.",
                max_length=10_000,
            )

    def grid_and_params(self) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """The swept parameters' values and the shared ones', typed; ValidationError by
        field for a value that is not of its parameter's type. Call after is_valid()."""
        grid: dict[str, list[Any]] = {}
        shared: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, text in self.cleaned_data.items():
            pieces = [piece.strip() for piece in text.split(SWEEP_VALUE_SEPARATOR)]
            pieces = [piece for piece in pieces if piece]
            if not pieces:
                continue
            try:
                values = [
                    params_from_form_values(self.kind_fields, {name: piece})[name]
                    for piece in pieces
                ]
            except ValidationError as error:
                errors[name] = [m for ms in error.message_dict.values() for m in ms]
                continue
            if len(values) > 1:
                grid[name] = values
            else:
                shared[name] = values[0]
        if errors:
            raise ValidationError(errors)
        return grid, shared


class JobIdsField(forms.Field):
    """Job ids given as repeated `job` values (`?job=3&job=7`), each a positive integer,
    duplicates dropped, in the order given."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        values = value if isinstance(value, list | tuple) else ([value] if value else [])
        ids: list[int] = []
        for raw in values:
            text = str(raw).strip().lstrip("#")
            if not text.isdigit() or not 0 < int(text) < 2**63:
                raise ValidationError(f"{str(raw)[:40]!r} is not a job number.", code="invalid")
            if int(text) not in ids:
                ids.append(int(text))
        return ids


class RunsCompareForm(forms.Form):
    """Which jobs the compare page shows side by side: two to COREBOARD_COMPARE_RUNS_MAX,
    oldest first."""

    job = JobIdsField(label="Jobs", required=False)

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit

    def clean_job(self) -> list[int]:
        ids: list[int] = self.cleaned_data["job"]
        if len(ids) < 2:
            raise ValidationError(
                "Choose at least two jobs to compare (tick them in History, then Compare "
                f"selected); you chose {len(ids)}.",
                code="too_few",
            )
        if len(ids) > self.limit:
            raise ValidationError(
                f"At most {self.limit} jobs can be compared at once "
                f"(COREBOARD_COMPARE_RUNS_MAX); you chose {len(ids)}.",
                code="too_many",
            )
        # Oldest first, whatever order the boxes were ticked or the URL lists them in.
        return sorted(ids)
