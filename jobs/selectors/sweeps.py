"""Reads of sweeps: who may see one, its status from its jobs', its one JSON shape (API,
page, CSV) and the history's summary of the sweeps on a page."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from jobs import kinds, protocol, scaling
from jobs.kinds.base import display_value
from jobs.models import Job, Sweep

# The figures of each run, after its parameters, in the CSV's column order.
SWEEP_FIGURE_COLUMNS = (
    "job",
    "status",
    scaling.WALL.key,
    "cpu_seconds",
    scaling.SPEEDUP.key,
    "result",
)
# What a run's one-line result may take (a page cell, a CSV cell).
RESULT_TEXT_MAX = 300
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def sweeps_visible_to(user: Any) -> QuerySet[Sweep]:
    """Like jobs (selectors.jobs.jobs_visible_to): staff see every sweep, others their own,
    so a history row of a sweep always leads to a page its reader may open."""
    if not user.is_authenticated:
        return Sweep.objects.none()
    sweeps = Sweep.objects.select_related("owner")
    return sweeps if user.is_staff else sweeps.filter(owner_id=user.pk)


def sweep_get_for_user(*, user: Any, sweep_id: int) -> Sweep | None:
    return sweeps_visible_to(user).filter(pk=sweep_id).first()


def sweep_status(counts: dict[str, int]) -> str:
    """protocol.SweepStatus from its jobs' counts by status."""
    if any(counts.get(status, 0) for status in Job.ACTIVE_STATUSES):
        return "running"
    if counts.get(Job.Status.FAILED, 0):
        return "failed"
    if counts.get(Job.Status.CANCELLED, 0):
        return "cancelled"
    return "succeeded"


def run_result_text(run: Job) -> str:
    """A run's result in one line: its kind's figures (`Primes found 168 · …`), else its
    JSON, cut to RESULT_TEXT_MAX characters; its error when it failed."""
    if run.status == Job.Status.FAILED:
        text = run.error.splitlines()[-1] if run.error.strip() else "failed"
    elif run.result is None:
        return ""
    else:
        text = ""
        try:
            display = kinds.get(run.kind).result_display(run.params, run.result)
        except (kinds.UnknownKind, KeyError, TypeError, ValueError):
            display = None
        if display is not None and display.figures:
            text = " · ".join(f"{label} {value}" for label, value in display.figures)
        else:
            text = json.dumps(run.result, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= RESULT_TEXT_MAX else text[: RESULT_TEXT_MAX - 1] + "…"


def sweep_runs(sweep: Sweep) -> list[Job]:
    return list(sweep.runs.with_timings().order_by("sweep_index"))


def sweep_as_dict(sweep: Sweep) -> protocol.SweepState:
    """The one shape of a sweep, for its page, the API and the CSV export."""
    runs = sweep_runs(sweep)
    counts = dict(Counter(run.status for run in runs))
    return protocol.sweep_state(
        sweep,
        owner=sweep.owner.get_username(),
        status=sweep_status(counts),
        counts=counts,
        runs=[protocol.sweep_run_state(run, run_result_text(run)) for run in runs],
    )


def sweep_param_columns(state: protocol.SweepState) -> list[str]:
    """Every parameter of its runs, the swept ones first (in the grid's order)."""
    names = list(state["swept"])
    for run in state["runs"]:
        names += [name for name in run["params"] if name not in names]
    return names


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        # Spreadsheets run a text cell that starts like a formula (OWASP "CSV injection").
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, bool | int | float):
        return value
    return _csv_cell(display_value(value))


def sweep_csv(state: protocol.SweepState) -> str:
    """One row per run: `params.<name>` for each parameter (swept first), then
    SWEEP_FIGURE_COLUMNS."""
    names = sweep_param_columns(state)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", *(f"params.{name}" for name in names), *SWEEP_FIGURE_COLUMNS])
    for run in state["runs"]:
        row: dict[str, Any] = dict(run)
        writer.writerow(
            [
                run["index"],
                *(_csv_cell(run["params"].get(name)) for name in names),
                *(_csv_cell(row[column]) for column in SWEEP_FIGURE_COLUMNS),
            ]
        )
    return out.getvalue()


def sweep_export_name(sweep: Sweep, extension: str) -> str:
    return f"sweep-{sweep.pk}.{extension}"


def sweep_counts(sweep_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Jobs by status of each sweep, for the history's sweep rows: one query for a page."""
    counts: dict[int, dict[str, int]] = {}
    rows = (
        Job.objects.filter(sweep_id__in=list(sweep_ids))
        .order_by()
        .values_list("sweep_id", "status")
        .annotate(n=Count("id"))
    )
    for sweep_id, status, n in rows:
        counts.setdefault(sweep_id, {})[status] = n
    return counts


def sweep_swept_names(sweep_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each sweep's swept parameters, for the history's sweep rows: one query for a page."""
    return dict(Sweep.objects.filter(pk__in=list(sweep_ids)).values_list("pk", "swept"))
