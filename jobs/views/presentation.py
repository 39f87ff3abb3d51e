"""How a job reads to people: its parameters and result as its kind displays them.

One place for the job page, its live summary fragment and the history list, so the three
show (and the history search finds) the same words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jobs import kinds, options
from jobs.kinds.base import ResultDisplay, display_value
from jobs.models import Job, Upload


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


# --- a result without a kind's result_display, as a readable table of its fields -----------

# At most this many key/value rows, table rows, and list items written out; the rest is
# counted ("… 12 more") and stays in the JSON below.
FIELDS_MAX = 60
TABLE_ROWS_MAX = 50
LIST_ITEMS_MAX = 10
TEXT_MAX = 200


@dataclass(frozen=True)
class FieldsTable:
    """A list of objects with the same keys, as a table."""

    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class ResultFields:
    """A result as rows of its fields (nested objects flattened to dotted keys) and tables
    (its lists of like objects)."""

    figures: list[tuple[str, str]] = field(default_factory=list)
    tables: list[FieldsTable] = field(default_factory=list)


def _scalar_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, str):
        return value if len(value) <= TEXT_MAX else value[: TEXT_MAX - 1] + "…"
    if isinstance(value, dict | list):
        return _scalar_text(json.dumps(value, ensure_ascii=False))
    return display_value(value)


def _more(count: int, noun: str) -> str:
    return f"… {count:,} more {noun}{'' if count == 1 else 's'}"


def _list_text(items: list[Any]) -> str:
    shown = ", ".join(_scalar_text(item) for item in items[:LIST_ITEMS_MAX])
    if len(items) > LIST_ITEMS_MAX:
        shown += f", {_more(len(items) - LIST_ITEMS_MAX, 'item')}"
    return shown or "(empty)"


def _is_table(items: Any) -> bool:
    """A list of objects that all have the same keys (at least two of them)."""
    if not isinstance(items, list) or len(items) < 2 or not isinstance(items[0], dict):
        return False
    keys = set(items[0])
    return bool(keys) and all(isinstance(item, dict) and set(item) == keys for item in items)


def _table(caption: str, items: list[dict[str, Any]]) -> FieldsTable:
    keys = list(items[0])
    rows = [[_scalar_text(item[key]) for key in keys] for item in items[:TABLE_ROWS_MAX]]
    columns = [str(key) for key in keys]
    if len(items) > TABLE_ROWS_MAX:
        caption += f" (the first {TABLE_ROWS_MAX} of {len(items):,} rows)"
    return FieldsTable(caption=caption, columns=columns, rows=rows)


def result_fields(result: Any) -> ResultFields:
    """`result` as people read it when its kind does not say how: objects as key/value
    rows (nested ones flattened with dotted keys), lists of like objects as tables, other
    lists written out (long ones cut, with a count)."""
    fields = ResultFields()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, child in value.items():
                walk(child, f"{key}.{name}" if key else str(name))
        elif _is_table(value):
            fields.tables.append(_table(key or "Result", value))
        elif isinstance(value, list):
            fields.figures.append((key or "Result", _list_text(value)))
        else:
            fields.figures.append((key or "Result", _scalar_text(value)))

    walk(result, "")
    if len(fields.figures) > FIELDS_MAX:
        hidden = len(fields.figures) - FIELDS_MAX
        del fields.figures[FIELDS_MAX:]
        fields.figures.append(("…", f"{_more(hidden, 'field')} in the JSON below"))
    return fields


def result_context(job: Job) -> dict[str, Any]:
    display = job_result_display(job)
    return {
        "result_display": display,
        "result_fields": result_fields(job.result)
        if display is None and job.result is not None
        else None,
        "result_json": job_result_json(job) if job.result is not None else "",
    }
