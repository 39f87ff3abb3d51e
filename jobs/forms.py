from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from jobs.models import Job

PARAMS_PREFIX = "params"


class UploadWidget(forms.ClearableFileInput):
    """A file input for an upload parameter; the view stores the file and posts its id."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        return data.get(name)

    def format_value(self, value: Any) -> None:
        return None


class JobOptionsForm(forms.Form):
    """Options every job has, shown beside the kind's own parameter form."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["parallelism"] = forms.IntegerField(
            min_value=1,
            max_value=settings.COREBOARD_MAX_PARALLELISM,
            required=False,
            help_text="Most chunks in flight at once; empty means one per worker core.",
            widget=forms.NumberInput(
                attrs={"placeholder": str(settings.COREBOARD_DEFAULT_PARALLELISM)}
            ),
        )


class HistoryFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *Job.Status.choices], required=False)

    def __init__(self, *args: Any, kind_names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"] = forms.ChoiceField(
            choices=[("", "Any kind"), *((name, name) for name in kind_names)], required=False
        )
