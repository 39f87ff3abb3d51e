"""Options every job has, whatever its kind: the one definition of a valid `parallelism`.

The services validate every job's parallelism with this field, whether it came from a page
or the API, and the new-job page's form shows the same field; both import it from here.
"""

from __future__ import annotations

from django import forms
from django.conf import settings


def parallelism_field() -> forms.IntegerField:
    """A job's `parallelism` field; made afresh each time because it reads today's settings."""
    limit = settings.COREBOARD_MAX_PARALLELISM
    between = f"Must be between 1 and {limit}."
    return forms.IntegerField(
        min_value=1,
        max_value=limit,
        error_messages={"min_value": between, "max_value": between},
        required=False,
        help_text=(
            "Most worker processes the job uses at once; empty means all the live worker "
            "processes that can run it, counted while it runs."
            if not settings.COREBOARD_DEFAULT_PARALLELISM
            else "Most worker processes the job uses at once; empty means "
            f"{settings.COREBOARD_DEFAULT_PARALLELISM}."
        ),
        widget=forms.NumberInput(
            attrs={"placeholder": str(settings.COREBOARD_DEFAULT_PARALLELISM or "all")}
        ),
    )
