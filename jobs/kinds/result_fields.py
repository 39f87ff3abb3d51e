"""A result whose kind has no `result_display`, as people read it: its fields as rows
(nested objects flattened to dotted keys), its lists of like objects as tables, other lists
written out, long ones cut with a count. The job page and `manage.py try_kind` both show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jobs.kinds.base import display_value

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
