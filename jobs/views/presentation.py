"""How a job reads to people: its parameters and result as its kind displays them.

One place for the job page, its live summary fragment and the history list, so the three
show (and the history search finds) the same words.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.urls import reverse

from jobs import kinds, options, protocol
from jobs.engine import workers
from jobs.kinds.base import ResultDisplay, display_value
from jobs.kinds.result_fields import result_fields
from jobs.kinds.versions import SHORT
from jobs.models import Job, Upload
from jobs.selectors.jobs import job_figures


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


# --- code versions ---------------------------------------------------------------------------


def code_short(value: str) -> str:
    """A digest or commit as people read it: its first SHORT digits, "unknown" for none."""
    return value[:SHORT] if value else "unknown"


# Lists (history) show digests and commits shorter than a job's page: two narrow lines in the
# Kind column keep the table within 1280 px.
LIST_SHORT = 8


def job_code_lines(job: Job) -> list[str]:
    """A job's submitted code for lists: its kind's source digest and the Coreboard commit."""
    if not (job.kind_source or job.coreboard_commit):
        return ["code not recorded"]
    return [
        f"source {code_short(job.kind_source)[:LIST_SHORT]}",
        f"commit {code_short(job.coreboard_commit)[:LIST_SHORT]}",
    ]


def job_code_display(job: Job, code: protocol.JobCode) -> list[tuple[str, str]]:
    """`(label, value)` pairs of a job's code version for its page."""
    rows = [
        ("Kind package", code["kind_package"] or "none (not from an installed package)"),
        ("Kind source", code_short(code["kind_source"])),
        ("Coreboard commit", code_short(code["coreboard_commit"])),
    ]
    if not (code["kind_source"] or code["coreboard_commit"]):
        rows = [("Code version", "not recorded (submitted before versions were kept)")]
    for entry in code["ran"]:
        if (entry["kind_source"], entry["coreboard_commit"]) != (
            code["kind_source"],
            code["coreboard_commit"],
        ) or len(code["ran"]) > 1:
            rows.append(
                (
                    "Ran with",
                    f"kind source {code_short(entry['kind_source'])}, Coreboard "
                    f"{code_short(entry['coreboard_commit'])} "
                    f"({entry['chunks']} chunk{'s' if entry['chunks'] != 1 else ''})",
                )
            )
    return rows


def code_changes(*, earlier: Job, earlier_source: str, now: Job | None = None) -> list[str]:
    """What changed in the code since `earlier` ran (`earlier_source`: the kind source that
    computed its result, selectors.job_kind_source_ran): compared with the job `now` when
    given (a rerun's own page), else with the code this process has loaded (the rerun form).
    Empty when nothing changed."""
    if now is not None:
        source, package, commit = now.kind_source, now.kind_package, now.coreboard_commit
    else:
        try:
            version = kinds.version(earlier.kind)
        except kinds.UnknownKind:
            return [f"The {earlier.kind} kind is no longer installed."]
        source, package, commit = version.source, version.package, workers.coreboard_commit()
    if not earlier_source:
        return [
            f"Job #{earlier.pk} ran before code versions were recorded: whether its kind's "
            "code changed since is unknown."
        ]
    notes = []
    if source != earlier_source:
        notes.append(
            f"The kind's code changed since job #{earlier.pk} ran: its source was "
            f"{code_short(earlier_source)}, now {code_short(source)}; results may differ."
        )
    if earlier.kind_package and package != earlier.kind_package:
        notes.append(
            f"The kind's package changed since job #{earlier.pk}: "
            f"{earlier.kind_package} then, {package or 'none'} now."
        )
    if earlier.coreboard_commit and commit and commit != earlier.coreboard_commit:
        notes.append(
            f"Coreboard itself changed since job #{earlier.pk}: commit "
            f"{code_short(earlier.coreboard_commit)} then, {code_short(commit)} now."
        )
    return notes


# --- comparing chosen runs ---------------------------------------------------------------------


def compared_params(jobs: list[Job]) -> list[dict[str, Any]]:
    """The compare page's parameter rows: the kind, each parameter any of the jobs has (in
    the order first met), parallelism, chunk time limit and code; `differs` when the jobs'
    values are not all the same (a parameter a job lacks reads "—")."""
    shown = [dict(job_params_display(job)) for job in jobs]
    labels: list[str] = []
    for params in shown:
        labels.extend(label for label in params if label not in labels)
    rows: list[tuple[str, list[str]]] = [("Kind", [job_kind_label(job) for job in jobs])]
    rows += [(label, [params.get(label, "—") for params in shown]) for label in labels]
    rows += [
        ("Parallelism", [str(job.parallelism or "all processes") for job in jobs]),
        ("Chunk time limit", [job_time_limit_text(job) for job in jobs]),
        ("Kind source", [code_short(job.kind_source) for job in jobs]),
        ("Coreboard commit", [code_short(job.coreboard_commit) for job in jobs]),
    ]
    return [
        {"label": label, "values": values, "differs": len(set(values)) > 1}
        for label, values in rows
    ]


def compared_run(
    job: Job,
    *,
    chunks_shown: int,
    chunk_times: dict[str, Any] | None,
    code: protocol.JobCode,
) -> dict[str, Any]:
    """One column of the compare page (and its JSON for the charts): the job, its figures,
    its code, its finished chunks' times (selectors.jobs_chunk_times: count, min, median,
    90th percentile, max; None when none finished) and how many chunks its stream shows."""
    return {
        "id": job.pk,
        "url": reverse("jobs:detail", args=[job.pk]),
        "kind_label": job_kind_label(job),
        "owner": job.owner.get_username(),
        "status": job.status,
        "started_at": protocol.iso(job.started_at),
        "finished_at": protocol.iso(job.finished_at),
        "figures": job_figures(job),
        "code_ran": [
            f"kind source {code_short(entry['kind_source'])}, Coreboard "
            f"{code_short(entry['coreboard_commit'])} ({entry['chunks']} chunks)"
            for entry in code["ran"]
        ],
        "chunk_stats": chunk_times,
        "chunks_shown": chunks_shown,
    }
