"""Options every job has, whatever its kind: the one definition of a valid `parallelism`,
of a chunk's time limit and of a priority.

The services validate every job's parallelism with this field, whether it came from a page
or the API, and the new-job page's form shows the same field; both import it from here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from jobs.kinds.base import JobKind
from jobs.models import Job, priority_name


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


def kind_time_limit_s(kind: JobKind) -> int:
    """How long one chunk of `kind` may run: its `time_limit_s`, at most (and by default)
    COREBOARD_CHUNK_TIME_LIMIT_S, the ceiling Celery's task time limits are set above."""
    ceiling: int = settings.COREBOARD_CHUNK_TIME_LIMIT_S
    return min(kind.time_limit_s or ceiling, ceiling)


def chunk_time_limit_s(kind: JobKind, job_limit_s: int | None) -> int:
    """A job's chunk time limit: the one it asked for (`Job.chunk_time_limit_s`), within
    its kind's."""
    limit = kind_time_limit_s(kind)
    return min(job_limit_s, limit) if job_limit_s else limit


def chunk_time_limit_field(kind: JobKind | None = None) -> forms.IntegerField:
    """A job's `chunk_time_limit_s` field (empty: the kind's limit); the bound is the
    kind's limit when the kind is known, else the global ceiling."""
    limit = kind_time_limit_s(kind) if kind is not None else settings.COREBOARD_CHUNK_TIME_LIMIT_S
    between = f"Must be between 1 and {limit} s (the kind's time limit)."
    return forms.IntegerField(
        label="Chunk time limit (s)",
        min_value=1,
        max_value=limit,
        error_messages={"min_value": between, "max_value": between},
        required=False,
        help_text=(
            f"Seconds one chunk may run before its process is stopped and the chunk fails; "
            f"empty means the kind's limit, {limit} s."
        ),
        widget=forms.NumberInput(attrs={"placeholder": str(limit)}),
    )


# --- priority -------------------------------------------------------------------------------

# A priority as people write it (form, API, command line): the choice's name in lower case.
PRIORITY_NAMES: dict[str, Job.Priority] = {priority_name(p): p for p in Job.Priority}
URGENT_PERMISSION = "jobs.submit_urgent"


def may_submit_urgent(user: Any) -> bool:
    """Whether `user` may give a job URGENT priority: staff grant the `jobs.submit_urgent`
    permission in the admin (to the person or a group; superusers have it)."""
    return bool(user is not None and user.has_perm(URGENT_PERMISSION))


def priority_field(*, may_urgent: bool = True) -> forms.TypedChoiceField:
    """A job's `priority` field (empty: normal); urgent is offered to those who may use it
    (the services check the permission again, whatever the page offered)."""
    names = [name for name in PRIORITY_NAMES if may_urgent or name != "urgent"]
    return forms.TypedChoiceField(
        choices=[(name, Job.Priority[name.upper()].label) for name in names],
        coerce=lambda name: PRIORITY_NAMES[name],
        required=False,
        empty_value=None,
        # Shown chosen on a new form (a select has no empty choice to fall back on).
        initial="normal",
        error_messages={
            "invalid_choice": f"Must be one of {', '.join(PRIORITY_NAMES)} (got “%(value)s”)."
        },
        help_text=(
            "Which waiting work the workers take first: a higher priority's slots go ahead "
            "of lower ones, and a running lower one gives way after its current chunk. "
            "Urgent needs a permission staff grant."
        ),
    )
