"""Where a value stops being JSON: the key path a kind's spec, partial or result breaks at.

Specs, partial results and results travel as JSON (Celery, PostgreSQL's jsonb), so a value
`json.dumps` would refuse, or that jsonb would refuse (NaN, infinities, NUL in text), is
named by its path, e.g. `result["counts"][3]: a set is not JSON`.
"""

from __future__ import annotations

import math
from typing import Any

# Nested deeper than this is refused rather than walked (json.dumps would recurse too).
MAX_DEPTH = 200


class NotJSON(TypeError):
    """A value that is not JSON; `path` is where (`result["a"][0]`), `reason` why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def json_problem(value: Any, root: str = "result") -> NotJSON | None:
    """The first place `value` is not JSON (as jsonb stores it), or None when it all is."""
    return _walk(value, root, ())


def _walk(item: Any, path: str, parents: tuple[int, ...]) -> NotJSON | None:
    if item is None or isinstance(item, bool | int):
        return None
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        return NotJSON(path, f"{item!r} is not JSON (only finite numbers are)")
    if isinstance(item, str):
        return (
            NotJSON(path, "text with a NUL character cannot be stored") if "\x00" in item else None
        )
    if not isinstance(item, dict | list | tuple):
        return NotJSON(path, f"{_a(type(item).__name__)} is not JSON")
    if id(item) in parents:
        return NotJSON(path, "contains itself (a circular reference)")
    if len(parents) >= MAX_DEPTH:
        return NotJSON(path, f"nested more than {MAX_DEPTH} levels deep")
    inside = (*parents, id(item))
    if isinstance(item, dict):
        for key, child in item.items():
            if key is not None and not isinstance(key, str | int | float | bool):
                return NotJSON(
                    f"{path}[{key!r}]",
                    f"a key of type {type(key).__name__} is not JSON (keys are text)",
                )
            if problem := _walk(child, f"{path}[{key!r}]", inside):
                return problem
        return None
    for i, child in enumerate(item):
        if problem := _walk(child, f"{path}[{i}]", inside):
            return problem
    return None


def check_json(value: Any, root: str = "result") -> None:
    """Raise NotJSON naming the first place `value` is not JSON."""
    problem = json_problem(value, root)
    if problem is not None:
        raise problem


def _a(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"
