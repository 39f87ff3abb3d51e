from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from jobs import kinds
from jobs.history import HISTORY_DEFAULT_SORT, HISTORY_SORTS
from jobs.kinds.base import JobKind
from jobs.models import Job
from jobs.options import (
    chunk_time_limit_field,
    may_submit_urgent,
    parallelism_field,
    priority_field,
)

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

    def __init__(
        self, *args: Any, kind_names: list[tuple[str, str]], show_owner: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"] = _kind_field(kind_names, required=False)
        order = ["q", "status", "kind"]
        if show_owner:
            self.fields["owner"] = _owner_field()
            order.append("owner")
        self.order_fields([*order, "created_from", "created_to", "sort"])

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
