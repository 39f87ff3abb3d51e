"""How a job reads to people: its parameters and result as its kind displays them.

One place for the job page, its live summary fragment and the history list, so the three
show (and the history search finds) the same words.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jobs import kinds, options
from jobs.kinds.base import ResultDisplay, display_value
from jobs.kinds.result_fields import result_fields
from jobs.models import Job, Upload


def duration_text(seconds: float | None) -> str:
    """A duration as every page writes it: the rules of static/lib/format.mjs formatSeconds.

    Rounded once, to the precision shown, before the unit is chosen, so 59.96 s reads
    `1 min 0 s`, never `60.0 s` or `1 min 60 s`: two decimals under a second, one under a
    minute, then minutes and seconds, then hours and minutes. Both sides are checked
    against one table (tests/duration_cases.json). Rounding is half up, as JavaScript's
    Math.round, not Python's half-to-even.
    """
    if seconds is None or not math.isfinite(seconds):
        return "—"
    value = max(0.0, float(seconds))
    hundredths = _round_half_up(value * 100)
    if hundredths < 100:
        return f"{hundredths // 100}.{hundredths % 100:02d} s"
    tenths = _round_half_up(value * 10)
    if tenths < 600:
        return f"{tenths // 10}.{tenths % 10} s"
    whole = _round_half_up(value)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    minutes = _round_half_up(value / 60)
    return f"{minutes // 60} h {minutes % 60} min"


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def job_kind_label(job: Job) -> str:
    try:
        return kinds.get(job.kind).label
    except kinds.UnknownKind:
        return job.kind


def job_params_display(job: Job) -> list[tuple[str, str]]:
    """`(label, value)` pairs in the form's order; a kind no longer installed shows its keys."""
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return [(name, display_value(value)) for name, value in job.params.items()]
    return kind.params_display(_upload_names(kind, job.params))


def _upload_names(kind: kinds.JobKind, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with each upload id replaced by its file name, as people know the file."""
    fields = kind.upload_fields()
    ids = [params[name] for name in fields if isinstance(params.get(name), int)]
    if not ids:
        return params
    names = dict(Upload.objects.filter(pk__in=ids).values_list("pk", "name"))
    shown = dict(params)
    for name in fields:
        upload_id = params.get(name)
        if isinstance(upload_id, int):
            shown[name] = names.get(upload_id, f"upload #{upload_id} (deleted)")
    return shown


def job_time_limit_text(job: Job) -> str:
    """How long one chunk of the job may run, and whose limit that is."""
    try:
        kind_limit = options.kind_time_limit_s(kinds.get(job.kind))
    except kinds.UnknownKind:
        kind_limit = None
    if job.chunk_time_limit_s:
        return f"{job.chunk_time_limit_s} s"
    return f"{kind_limit} s (the kind's)" if kind_limit else "the kind's"


def job_params_text(job: Job) -> str:
    """The parameters on one line: `Start 0 · Stop 1000 · Chunks 4`."""
    return " · ".join(f"{label} {value}" for label, value in job_params_display(job))


def job_result_display(job: Job) -> ResultDisplay | None:
    if job.result is None:
        return None
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return None
    try:
        return kind.result_display(job.params, job.result)
    except (KeyError, TypeError, ValueError):
        # A result stored by an older version of the kind: the raw JSON still shows it.
        return None


def job_result_json(job: Job) -> str:
    return json.dumps(job.result, indent=2, ensure_ascii=False)


def result_context(job: Job) -> dict[str, Any]:
    display = job_result_display(job)
    return {
        "result_display": display,
        "result_fields": result_fields(job.result)
        if display is None and job.result is not None
        else None,
        "result_json": job_result_json(job) if job.result is not None else "",
    }
