"""Named reducers: how a function kind folds its partial results (in chunk order) into one.

| name | partials | result |
|---|---|---|
| `sum` | numbers, or dicts of numbers | their sum; dicts summed per key |
| `concat` | lists | one list, in chunk order |
| `min`, `max` | numbers (None skipped) | the smallest / largest, None when none |
| `mean` | numbers or lists of numbers | `{"mean", "std_error", "n"}` over every number |
| `histogram` | dicts of counts, or equal-length lists of counts | counts added by key / position |
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

Reducer = Callable[[Sequence[Any]], Any]


class ReduceError(TypeError):
    """Partials a named reducer cannot fold; says which partial and why."""


def reduce_sum(partials: Sequence[Any]) -> Any:
    if partials and all(isinstance(partial, dict) for partial in partials):
        total: dict[str, Any] = {}
        for index, partial in enumerate(partials):
            for key, value in partial.items():
                _number("sum", index, value, key)
                total[key] = total.get(key, 0) + value
        return total
    for index, partial in enumerate(partials):
        _number("sum", index, partial)
    return sum(partials)


def reduce_concat(partials: Sequence[Any]) -> list[Any]:
    joined: list[Any] = []
    for index, partial in enumerate(partials):
        if not isinstance(partial, list):
            raise ReduceError(f"concat: partial {index} is {_kind(partial)}, not a list.")
        joined.extend(partial)
    return joined


def reduce_min(partials: Sequence[Any]) -> Any:
    return min(_numbers("min", partials), default=None)


def reduce_max(partials: Sequence[Any]) -> Any:
    return max(_numbers("max", partials), default=None)


def reduce_mean(partials: Sequence[Any]) -> dict[str, Any]:
    """The mean of every number, its standard error (sample deviation / √n; None for n < 2)."""
    values: list[float] = []
    for index, partial in enumerate(partials):
        for value in partial if isinstance(partial, list) else [partial]:
            _number("mean", index, value)
            values.append(value)
    n = len(values)
    if n == 0:
        return {"mean": None, "std_error": None, "n": 0}
    mean = math.fsum(values) / n
    if n < 2:
        return {"mean": mean, "std_error": None, "n": n}
    variance = math.fsum((value - mean) ** 2 for value in values) / (n - 1)
    return {"mean": mean, "std_error": math.sqrt(variance / n), "n": n}


def reduce_histogram(partials: Sequence[Any]) -> Any:
    if partials and all(isinstance(partial, list) for partial in partials):
        width = len(partials[0])
        counts = [0] * width
        for index, partial in enumerate(partials):
            if len(partial) != width:
                raise ReduceError(
                    f"histogram: partial {index} has {len(partial)} counts, partial 0 has {width}."
                )
            for position, value in enumerate(partial):
                _number("histogram", index, value, position)
                counts[position] += value
        return counts
    merged: Counter[str] = Counter()
    for index, partial in enumerate(partials):
        if not isinstance(partial, dict):
            raise ReduceError(
                f"histogram: partial {index} is {_kind(partial)}; histogram merges dicts of "
                "counts or lists of counts."
            )
        for key, value in partial.items():
            _number("histogram", index, value, key)
        merged.update(partial)
    return dict(merged)


REDUCERS: dict[str, Reducer] = {
    "sum": reduce_sum,
    "concat": reduce_concat,
    "min": reduce_min,
    "max": reduce_max,
    "mean": reduce_mean,
    "histogram": reduce_histogram,
}


def _numbers(name: str, partials: Sequence[Any]) -> list[Any]:
    for index, partial in enumerate(partials):
        if partial is not None:
            _number(name, index, partial)
    return [partial for partial in partials if partial is not None]


def _number(name: str, index: int, value: Any, key: Any = None) -> None:
    if isinstance(value, Real):
        return
    where = f"partial {index}" if key is None else f"partial {index}[{key!r}]"
    raise ReduceError(f"{name}: {where} is {_kind(value)}, not a number.")


def _kind(value: Any) -> str:
    return f"a {type(value).__name__}" if value is not None else "None"
