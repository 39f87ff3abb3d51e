"""A result without a kind's result_display, as a readable table of its fields."""

from __future__ import annotations

import pytest

from jobs.kinds.result_fields import (
    FIELDS_MAX,
    LIST_ITEMS_MAX,
    TABLE_ROWS_MAX,
    FieldsTable,
    result_fields,
)

pytestmark = pytest.mark.services


def test_an_object_is_key_value_rows_with_nested_objects_flattened() -> None:
    shown = result_fields({"estimate": 3.14159265358979, "n": 1000, "fit": {"a": 1.5, "ok": True}})
    assert shown.figures == [
        ("estimate", "3.141592654"),
        ("n", "1000"),
        ("fit.a", "1.5"),
        ("fit.ok", "yes"),
    ]
    assert shown.tables == []


def test_a_list_of_like_objects_is_a_table() -> None:
    shown = result_fields({"total": 3, "words": [{"word": "a", "n": 2}, {"word": "b", "n": 1}]})
    assert shown.figures == [("total", "3")]
    assert shown.tables == [FieldsTable("words", ["word", "n"], [["a", "2"], ["b", "1"]])]


def test_a_top_level_list_of_like_objects_is_a_table_cut_with_a_count() -> None:
    rows = [{"i": i, "sq": i * i} for i in range(TABLE_ROWS_MAX + 7)]
    (table,) = result_fields(rows).tables
    assert len(table.rows) == TABLE_ROWS_MAX
    assert table.caption == f"Result (the first {TABLE_ROWS_MAX} of {TABLE_ROWS_MAX + 7} rows)"


def test_long_lists_and_many_fields_are_cut_with_a_count() -> None:
    shown = result_fields({"primes": list(range(LIST_ITEMS_MAX + 5)), "empty": []})
    assert shown.figures[0] == (
        "primes",
        ", ".join(str(i) for i in range(LIST_ITEMS_MAX)) + ", … 5 more items",
    )
    assert shown.figures[1] == ("empty", "(empty)")
    many = result_fields({f"k{i}": i for i in range(FIELDS_MAX + 3)})
    assert len(many.figures) == FIELDS_MAX + 1
    assert many.figures[-1] == ("…", "… 3 more fields in the JSON below")


def test_a_scalar_result_and_unlike_objects_still_read() -> None:
    assert result_fields(42).figures == [("Result", "42")]
    assert result_fields(None).figures == [("Result", "—")]
    mixed = result_fields({"items": [{"a": 1}, {"b": 2}]})
    assert mixed.figures == [("items", '{"a": 1}, {"b": 2}')]


def test_like_objects_with_keys_in_another_order_are_one_table() -> None:
    (table,) = result_fields([{"a": 1, "b": 2}, {"b": 4, "a": 3}]).tables
    assert table.columns == ["a", "b"]
    assert table.rows == [["1", "2"], ["3", "4"]]
