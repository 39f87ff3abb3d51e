"""Sweeps: N jobs of one kind over a grid or a list of parameter sets, admitted as one unit.

A grid (`{"n": [1, 2, 3], "seed": [0, 1, 2]}`) runs the cartesian product of its value
lists, the first parameter varying slowest; a list of sets runs each set as given. Both add
`params`, the values every run shares. Every run is validated and split before anything is
written, their costs summed (quotas.Cost.total), and the sum admitted once under the
owner's lock (jobs.services.admission.admit: one job creation of the rate, the quotas
against all N jobs); then the sweep and all its jobs are stored in that one transaction:
all of them or, refused, none. COREBOARD_SWEEP_MAX_RUNS caps N, counted before any set is
built, so a grid of a million combinations costs its refusal only.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Mapping
from typing import Any, NoReturn

from django.conf import settings
from django.db import transaction

from jobs import kinds
from jobs.kinds.base import display_value
from jobs.models import Job, Sweep
from jobs.services import admission, quotas
from jobs.services.errors import Conflict, Rejected
from jobs.services.jobs import JobPlan, job_cancel, job_plan_unadmitted, jobs_store


def max_runs() -> int:
    """The most jobs one sweep may create (COREBOARD_SWEEP_MAX_RUNS)."""
    return int(settings.COREBOARD_SWEEP_MAX_RUNS)


def _limit_words() -> str:
    return f"a sweep may create at most {max_runs():,} jobs (COREBOARD_SWEEP_MAX_RUNS)"


def _parameter_names(kind: str) -> list[str]:
    try:
        return list(kinds.get(kind).form_class.base_fields)
    except kinds.UnknownKind:
        names = ", ".join(k.name for k in kinds.all_kinds())
        raise Rejected({"kind": [f"Unknown kind {kind!r}; choose one of: {names}."]}) from None


def sweep_param_sets(
    *,
    kind: str,
    params: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
    sets: Any = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The swept parameter names and each run's parameters (shared `params` plus its own
    values), in run order; Rejected by field (`kind`, `params`, `grid`, `sets`) when the
    shape is wrong or the runs would be more than COREBOARD_SWEEP_MAX_RUNS.

    Values are not validated here: each run's are, by its kind, when it is planned."""
    names = _parameter_names(kind)
    if not isinstance(params, Mapping) and params is not None:
        raise Rejected({"params": ["Must be an object of the parameters every run shares."]})
    shared = dict(params or {})
    if (grid is None) == (sets is None):
        message = "Give either a grid (values per parameter) or a list of parameter sets."
        _refuse({"grid": [message], "sets": [message]})
    if grid is not None:
        return _grid_sets(names, shared, grid)
    return _list_sets(names, shared, sets)


def _refuse(errors: dict[str, Any]) -> NoReturn:
    raise Rejected(errors)


def _grid_sets(
    names: list[str], shared: dict[str, Any], grid: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(grid, Mapping) or not grid:
        _refuse({"grid": ["Must be an object: each swept parameter's list of values."]})
    errors: dict[str, list[str]] = {}
    for name, values in grid.items():
        if name not in names:
            errors[name] = [f"Unknown parameter; expected one of: {', '.join(names)}."]
        elif name in shared:
            errors[name] = ["Given in both params and grid; give it in one of them."]
        elif not isinstance(values, list) or not values:
            errors[name] = ["Must be a non-empty list of values."]
    if errors:
        _refuse({"grid": errors})
    runs = math.prod(len(values) for values in grid.values())
    if runs > max_runs():
        product = " × ".join(str(len(values)) for values in grid.values())
        _refuse({"grid": [f"This grid has {product} = {runs:,} runs; {_limit_words()}."]})
    swept = list(grid)
    combos = itertools.product(*(grid[name] for name in swept))
    return swept, [shared | dict(zip(swept, combo, strict=True)) for combo in combos]


def _list_sets(
    names: list[str], shared: dict[str, Any], sets: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(sets, list) or not sets:
        _refuse({"sets": ["Must be a non-empty list of parameter objects."]})
    if len(sets) > max_runs():
        _refuse({"sets": [f"{len(sets):,} sets given; {_limit_words()}."]})
    if bad := [i for i, one in enumerate(sets) if not isinstance(one, Mapping)]:
        _refuse({"sets": [f"Set {bad[0]} is not an object of parameters."]})
    runs = [shared | dict(one) for one in sets]
    # Swept: the parameters whose values differ between sets, in the kind's order.
    swept = [
        name
        for name in names
        if len({_hashable(run.get(name)) for run in runs}) > 1 and name not in shared
    ]
    return swept, runs


def _hashable(value: Any) -> Any:
    return repr(value)


def sweep_plans(
    *,
    owner: Any,
    kind: str,
    swept: list[str],
    runs: list[dict[str, Any]],
    parallelism: int | None = None,
    chunk_time_limit_s: int | None = None,
) -> list[JobPlan]:
    """Each run validated and split as a job would be; Rejected when any is invalid, each
    parameter's first error saying which run's values it came from.

    The splits run in the web process, one after another: together they get the CPU
    budget of one job's split (COREBOARD_SPLIT_CPU_MS, checked between runs, so at most
    one split's budget more), and planning stops as soon as the runs' chunks pass what one
    person may have waiting (COREBOARD_QUOTA_CHUNKS), so a sweep costs the web process no
    more memory or CPU than the largest job it could admit."""
    plans: list[JobPlan] = []
    errors: dict[str, Any] = {}
    budget_s = settings.COREBOARD_SPLIT_CPU_MS / 1000
    chunk_limit = settings.COREBOARD_QUOTA_CHUNKS
    began = time.thread_time()
    chunks = 0
    for index, run in enumerate(runs):
        if time.thread_time() - began > budget_s:
            raise Rejected(
                {
                    "kind": [
                        f"Splitting the first {index} runs of this sweep took more than "
                        f"{settings.COREBOARD_SPLIT_CPU_MS:,} ms of CPU together "
                        "(COREBOARD_SPLIT_CPU_MS, for all of a sweep's runs), so it was "
                        "stopped: sweep fewer or smaller jobs."
                    ]
                }
            )
        try:
            plan = job_plan_unadmitted(
                owner=owner,
                kind=kind,
                params=run,
                parallelism=parallelism,
                chunk_time_limit_s=chunk_time_limit_s,
            )
        except Rejected as rejected:
            if "params" not in rejected.errors:
                raise  # kind, parallelism, chunk time limit: the same for every run
            where = ", ".join(f"{n} = {display_value(run.get(n))}" for n in swept) or "shared"
            by_param = errors.setdefault("params", {})
            for name, messages in rejected.errors["params"].items():
                if name not in by_param:
                    by_param[name] = [f"Run {index} ({where}): {m}" for m in messages]
            continue
        plans.append(plan)
        chunks += len(plan.specs)
        if chunks > chunk_limit:
            raise Rejected(
                {
                    "quota": [
                        f"The first {index + 1} runs of this sweep already have {chunks:,} "
                        f"chunks; the quota is {chunk_limit:,} chunks waiting or running "
                        "(COREBOARD_QUOTA_CHUNKS)."
                    ]
                }
            )
    if errors:
        raise Rejected(errors)
    return plans


def sweep_create(
    *,
    owner: Any,
    kind: str,
    params: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
    sets: Any = None,
    parallelism: int | None = None,
    chunk_time_limit_s: int | None = None,
    by: Any | None = None,
) -> Sweep:
    """Create a sweep and all its jobs, or nothing.

    `by`, the person asking, spends one job creation for the whole sweep (None: Coreboard
    itself, e.g. a schedule); the quotas count all its jobs at once (their jobs, chunks and
    CPU seconds summed). Raises Rejected by field (`kind`, `params` by parameter, `grid`,
    `sets`, `parallelism`, `chunk_time_limit_s`, `quota`) or RateLimited.
    """
    scope = admission.Scope.JOB_CREATE
    if by is not None:
        admission.rate_check(person=by, scope=scope)
    swept, runs = sweep_param_sets(kind=kind, params=params, grid=grid, sets=sets)
    # Refused before any run is split when its count alone is over the active-jobs quota
    # (checked again, with everything, under the lock below).
    if over := quotas.quota_errors(owner=owner, cost=quotas.Cost(len(runs), 0, 0.0)):
        raise Rejected({"quota": over})
    plans = sweep_plans(
        owner=owner,
        kind=kind,
        swept=swept,
        runs=runs,
        parallelism=parallelism,
        chunk_time_limit_s=chunk_time_limit_s,
    )
    cost = quotas.Cost.total([plan.cost for plan in plans])
    with transaction.atomic():
        admission.admit(owner=owner, cost=cost, by=by, scope=scope)
        first = plans[0]
        sweep = Sweep.objects.create(
            owner=owner,
            kind=first.kind,
            base_params={k: v for k, v in first.params.items() if k not in swept},
            swept=swept,
            grid=dict(grid) if grid is not None else None,
            parallelism=first.parallelism,
            chunk_time_limit_s=first.chunk_time_limit_s,
        )
        jobs_store(owner=owner, plans=plans, sweep=sweep)
    return sweep


def sweep_cancel(*, sweep: Sweep) -> Sweep:
    """Cancel every active job of the sweep; Conflict if none was active."""
    cancelled = 0
    with transaction.atomic():
        for run in sweep.runs.filter(status__in=Job.ACTIVE_STATUSES).order_by("sweep_index"):
            # One may end meanwhile: that is what cancelling wants anyway.
            with contextlib.suppress(Conflict):
                job_cancel(job=run)
                cancelled += 1
    if not cancelled:
        raise Conflict(f"Sweep {sweep.pk} has no active jobs; nothing to cancel.")
    return sweep
