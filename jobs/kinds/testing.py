"""Testing a job kind in one line, in a team's pytest suite or a plain script:

    from jobs.kinds.testing import run_kind

    assert run_kind("sum_squares", n=1000, chunks=7) == {"sum": 332833500}

`run_kind` validates the parameters with the kind's form, splits, runs every chunk in this
process and combines, checking that every spec, partial and the result is JSON (a value
that is not fails with the key path). It sets Django up itself when nothing has yet
(DJANGO_SETTINGS_MODULE, else project.settings), so it needs no pytest-django and no
database.
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.apps import apps

from jobs.kinds import trial
from jobs.kinds.base import JobKind, Spec

__all__ = ["run_kind", "split_kind"]


def _django_ready() -> None:
    """Set Django up unless something (pytest-django, manage.py) has already."""
    if apps.ready:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()


def _kind(kind: JobKind | type[JobKind] | str) -> JobKind:
    _django_ready()
    if isinstance(kind, JobKind):
        return kind
    if isinstance(kind, type):
        return kind()
    return trial.kind_resolve(kind)


def run_kind(kind: JobKind | type[JobKind] | str, /, **params: Any) -> Any:
    """The result of a whole job of `kind` (a name, a module, a class or an instance) with
    `params`, run serially in this process. Raises ValidationError (by field) for bad
    parameters and TypeError naming the key path for a value that is not JSON."""
    chosen = _kind(kind)
    return trial.trial_run(chosen, chosen.clean_params(params)).result


def split_kind(kind: JobKind | type[JobKind] | str, /, **params: Any) -> list[Spec]:
    """The chunk specs `kind` makes of `params` (checked to be JSON), without running them."""
    chosen = _kind(kind)
    return trial.trial_specs(chosen, chosen.clean_params(params))
