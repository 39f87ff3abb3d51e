"""Kinds made from one typed function (jobs.kinds.function): forms, splits, reducers, ports."""

from __future__ import annotations

import enum
import itertools
import math
import random
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from jobs import kinds
from jobs.api import openapi
from jobs.kinds.base import JobKind, ListField, ResultDisplay, UploadField, display_value
from jobs.kinds.function import (
    FunctionKind,
    Help,
    KindDefinitionError,
    Label,
    MaxLength,
    Range,
    ReduceError,
    Upload,
    function_kind,
    kind,
    over_items,
    over_lines,
    over_range,
    seeded,
    seeded_stream,
)
from jobs.kinds.function.reducers import REDUCERS

pytestmark = pytest.mark.services


def run_all(made: JobKind, params: dict[str, Any]) -> Any:
    clean = made.clean_params(params)
    partials = [made.run(spec, lambda done, total: None) for spec in made.split(clean)]
    return made.combine(clean, partials)


def build(function: Callable[..., Any], **options: Any) -> FunctionKind:
    options.setdefault("split", seeded())
    options.setdefault("combine", "concat")
    return function_kind(function, **options)()


def field_of(made: JobKind, name: str) -> forms.Field:
    return made.form_class.base_fields[name]


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


# --- the form, from type hints ------------------------------------------------------------------


def test_each_type_hint_becomes_its_form_field_with_its_limits_and_words() -> None:
    def typed(
        rng: random.Random,
        count: Annotated[int, Range(1, 50), Label("How many"), Help("Per chunk.")],
        scale: Annotated[float, Range(0.5, 2.0)] = 1.0,
        loud: bool = False,
        name: Annotated[str, MaxLength(12)] = "ada",
        mode: Literal["fast", "exact"] = "fast",
        colour: Colour = Colour.GREEN,
        weights: Annotated[list[float], Range(0, 1), MaxLength(3)] = [0.5],  # noqa: B006
    ) -> None:
        return None

    made = build(typed)
    count = field_of(made, "count")
    assert isinstance(count, forms.IntegerField)
    assert (count.min_value, count.max_value, count.required) == (1, 50, True)
    assert (count.label, count.help_text, count.initial) == ("How many", "Per chunk.", None)
    scale = field_of(made, "scale")
    assert isinstance(scale, forms.FloatField)
    assert (scale.min_value, scale.max_value, scale.initial) == (0.5, 2.0, 1.0)
    loud = field_of(made, "loud")
    assert isinstance(loud, forms.BooleanField)
    assert not loud.required
    name = field_of(made, "name")
    assert isinstance(name, forms.CharField)
    assert name.max_length == 12
    assert field_of(made, "mode").choices == [("fast", "fast"), ("exact", "exact")]  # type: ignore[attr-defined]
    assert field_of(made, "colour").initial == "green"
    weights = field_of(made, "weights")
    assert isinstance(weights, ListField)
    assert isinstance(weights.widget, forms.Textarea)
    assert weights.max_items == 3
    assert weights.initial == [0.5]
    # What a split adds when the function does not declare it: chunks, then seed.
    assert list(made.form_class.base_fields) == [
        "count", "scale", "loud", "name", "mode", "colour", "weights", "chunks", "seed",
    ]  # fmt: skip


def test_defaults_fill_omitted_params_and_a_parameter_without_one_is_required() -> None:
    def repeat(rng: random.Random, word: str, times: Annotated[int, Range(1, 5)] = 2) -> str:
        return word * times

    made = build(repeat)
    with pytest.raises(ValidationError) as caught:
        made.clean_params({})
    assert caught.value.message_dict == {"word": ["This field is required."]}
    assert made.clean_params({"word": "ab"}) == {"word": "ab", "times": 2, "chunks": 16, "seed": 1}


def test_the_function_receives_enum_members_and_the_job_keeps_their_values() -> None:
    def pick(rng: random.Random, colour: Colour, level: Level = Level.HIGH) -> list[str]:
        return [colour.name, level.name]

    made = build(pick)
    assert field_of(made, "level").choices == [("LOW", "LOW"), ("HIGH", "HIGH")]  # type: ignore[attr-defined]
    clean = made.clean_params({"colour": "red", "chunks": 1})
    assert clean["colour"] == "red"
    assert run_all(made, {"colour": "red", "chunks": 2}) == ["RED", "HIGH", "RED", "HIGH"]
    with pytest.raises(ValidationError) as caught:
        made.clean_params({"colour": "blue"})
    assert "not one of the available choices" in caught.value.message_dict["colour"][0]


@pytest.fixture
def annotated_types_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Stand-ins for the `annotated_types` package's constraints (not a dependency): the
    function kinds read them by their module and class names and attributes."""
    module = types.ModuleType("annotated_types")
    for name, attributes in {
        "Ge": ("ge",),
        "Gt": ("gt",),
        "Le": ("le",),
        "Lt": ("lt",),
        "Interval": ("gt", "ge", "lt", "le"),
        "MaxLen": ("max_length",),
        "MinLen": ("min_length",),
    }.items():
        made: Any = dataclass(frozen=True)(
            type(
                name,
                (),
                {"__annotations__": dict.fromkeys(attributes, "Any"), **dict.fromkeys(attributes)},
            )
        )
        made.__module__ = "annotated_types"
        setattr(module, name, made)
    monkeypatch.setitem(sys.modules, "annotated_types", module)
    return module


def test_annotated_types_constraints_set_the_limits(annotated_types_module: Any) -> None:
    at = annotated_types_module

    def bounded(rng, above, between, ratio, code, ids):  # type: ignore[no-untyped-def]
        return None

    # As a module without `from __future__ import annotations` would hold them.
    bounded.__annotations__ = {
        "above": Annotated[int, at.Gt(0), at.Lt(10)],
        "between": Annotated[int, at.Interval(ge=2, le=8)],
        "ratio": Annotated[float, at.Gt(0.0), at.Le(1.0)],
        "code": Annotated[str, at.MinLen(2), at.MaxLen(4)],
        "ids": Annotated[list[int], at.MaxLen(2), at.Ge(0)],
    }

    made = build(bounded)
    above, between = field_of(made, "above"), field_of(made, "between")
    assert isinstance(above, forms.IntegerField)
    assert isinstance(between, forms.IntegerField)
    assert (above.min_value, above.max_value) == (1, 9)
    assert (between.min_value, between.max_value) == (2, 8)
    code = field_of(made, "code")
    assert isinstance(code, forms.CharField)
    assert (code.min_length, code.max_length) == (2, 4)
    base = {"above": 1, "between": 2, "code": "ab", "ids": [1]}
    with pytest.raises(ValidationError) as caught:
        made.clean_params({**base, "ratio": 0.0})
    assert "greater than 0.0" in caught.value.message_dict["ratio"][0]
    assert made.clean_params({**base, "ratio": 1.0})["ratio"] == 1.0
    with pytest.raises(ValidationError) as caught:
        made.clean_params({**base, "ratio": 0.5, "ids": [1, 2, 3]})
    assert caught.value.message_dict["ids"] == ["At most 2 items, not 3."]
    with pytest.raises(ValidationError) as caught:
        made.clean_params({**base, "ratio": 0.5, "ids": [-1]})
    assert (
        "Item 1 (-1): Ensure this value is greater than or equal to 0."
        in (caught.value.message_dict["ids"])
    )


def no_hint(rng, count=3):  # type: ignore[no-untyped-def]
    return count


def a_dict(rng: random.Random, table: dict[str, int]) -> None:
    return None


def range_on_text(rng: random.Random, word: Annotated[str, Range(1, 3)]) -> None:
    return None


def default_out_of_range(rng: random.Random, n: Annotated[int, Range(1, 10)] = 0) -> None:
    return None


def unknown_metadata(rng: random.Random, n: Annotated[int, "a note"]) -> None:
    return None


def int_literal(rng: random.Random, n: Literal[1, 2]) -> None:
    return None


def star_args(rng: random.Random, *rest: int) -> None:
    return None


def list_of_dicts(rng: random.Random, rows: list[dict[str, int]]) -> None:
    return None


def optional(rng: random.Random, tags: list[str] | None = None) -> None:
    return None


def nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (no_hint, r"no_hint\(count\): needs a type hint"),
        (a_dict, r"a_dict\(table\): dict\[str, int\] has no form field; use int, float"),
        (range_on_text, r"range_on_text\(word\): a str cannot have a Range"),
        (default_out_of_range, r"default_out_of_range\(n\): the default 0 is not a valid value"),
        (unknown_metadata, r"unknown_metadata\(n\): 'a note' in Annotated is not Range"),
        (int_literal, r"int_literal\(n\): a Literal's choices must be strings"),
        (star_args, r"star_args\(rest\): \*args and \*\*kwargs cannot be form fields"),
        (list_of_dicts, r"list_of_dicts\(rows\): .* lists hold str, int or float"),
        (optional, r"optional\(tags\): list\[str\] \| None has no form field"),
        (nothing, r"nothing\(\): needs a first positional parameter"),
    ],
)
def test_unsupported_parameters_are_refused_when_the_kind_is_defined(
    function: Callable[..., Any], message: str
) -> None:
    with pytest.raises(KindDefinitionError, match=message):
        build(function)


def test_strategy_and_combine_mistakes_are_refused_when_the_kind_is_defined() -> None:
    def over(numbers: range, size: int = 10) -> int:
        return len(numbers)

    with pytest.raises(
        KindDefinitionError, match=r"over\(\): over_range needs an int parameter `n`"
    ):
        build(over, split=over_range("n"))
    with pytest.raises(
        KindDefinitionError, match=r"receives the chunk, a Random, but is annotated"
    ):
        build(over, split=seeded())
    with pytest.raises(KindDefinitionError, match=r"combine='total' is not one of sum, concat"):
        build(over, split=over_range("size"), combine="total")
    with pytest.raises(
        KindDefinitionError, match=r"over_items\('words'\) cuts the function's first"
    ):
        build(over, split=over_items("words"))
    with pytest.raises(KindDefinitionError, match=r"takes \(value\) or \(params, value\)"):
        build(over, split=over_range("size"), combine=lambda: None)


# --- what the API and the page send -----------------------------------------------------------


def total(numbers: list[int], offset: int = 0) -> int:
    return sum(numbers) + offset * len(numbers)


@pytest.fixture
def total_kind() -> FunctionKind:
    return build(total, split=over_items("numbers"), combine="sum")


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"numbers": "1\n2"}, "numbers", "Must be a JSON array, not a string."),
        ({"numbers": [1, "2"]}, "numbers", "Item 2 ('2'): Must be a JSON integer, not a string."),
        ({"numbers": [1, 2.5]}, "numbers", "Item 2 (2.5): Must be a JSON integer"),
        ({"numbers": [1], "offset": "3"}, "offset", "Must be a JSON integer, not a string."),
        ({"numbers": []}, "numbers", "This field is required."),
        ({"numbers": [1, 2], "chunks": 3}, "chunks", "Must be at most the number of Numbers (2)."),
        ({"numbers": [1], "step": 2}, "step", "Unknown parameter; expected one of: numbers"),
        ({"numbers": list(range(10_001))}, "numbers", "At most 10000 items, not 10001."),
    ],
)
def test_api_params_are_refused_by_field(
    total_kind: FunctionKind, params: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        total_kind.clean_params(params)
    assert message in " ".join(caught.value.message_dict[field])


def test_a_list_typed_in_the_browser_one_per_line_is_cleaned_again_by_the_services(
    total_kind: FunctionKind,
) -> None:
    form = total_kind.form_class(
        data={"numbers": "4\r\n 5 \r\n\r\n6", "chunks": "2", "offset": "1"}
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"numbers": [4, 5, 6], "offset": 1, "chunks": 2}
    # The new-job page posts its cleaned data to job_create, which validates it as API input.
    assert total_kind.clean_params(form.cleaned_data) == form.cleaned_data
    assert run_all(total_kind, form.cleaned_data) == 18
    # Running a job again shows its list one item per line.
    assert 'name="numbers"' in str(total_kind.form_class(initial={"numbers": [4, 5]})["numbers"])
    assert "4\n5</textarea>" in str(total_kind.form_class(initial={"numbers": [4, 5]})["numbers"])
    bad = total_kind.form_class(data={"numbers": "4\nfour", "chunks": "1", "offset": "0"})
    assert not bad.is_valid()
    assert bad.errors["numbers"] == ["Item 2 ('four'): Enter a whole number."]


def test_a_list_parameter_is_shown_by_its_first_items_and_documented_as_an_array(
    total_kind: FunctionKind,
) -> None:
    assert display_value([1, 2, 3]) == "1, 2, 3"
    assert display_value(list(range(8))) == "0, 1, 2, 3, 4, … (8 items)"
    schema = openapi.form_json_schema(total_kind.form_class)
    assert schema["properties"]["numbers"] == {
        "type": "array",
        "items": {"type": "integer"},
        "maxItems": 10_000,
    }
    assert schema["required"] == ["numbers"]


# --- split strategies --------------------------------------------------------------------------


def span(numbers: range, n: Annotated[int, Range(1, 10**6)], start: int = 0) -> list[int]:
    return [numbers.start, numbers.stop]


@pytest.mark.parametrize(
    ("start", "n", "chunks"), [(0, 10, 1), (0, 10, 3), (5, 12, 7), (3, 1000, 16)]
)
def test_over_range_covers_every_integer_once_in_contiguous_ranges(
    start: int, n: int, chunks: int
) -> None:
    made = build(span, split=over_range("n", start="start"))
    specs = made.split(made.clean_params({"n": n, "start": start, "chunks": chunks}))
    assert len(specs) == chunks
    received = [made.run(spec, lambda done, total: None) for spec in specs]
    assert [x for a, b in received for x in range(a, b)] == list(range(start, n))
    assert all(b - a >= (n - start) // chunks for a, b in received)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"n": 5, "start": 5}, "n", "Must be greater than Start (5)."),
        ({"n": 5, "start": 0, "chunks": 6}, "chunks", "Must be at most the size of the range (5)."),
        ({"n": 2000, "start": 0}, "n", "N minus Start must be at most 1,000."),
    ],
)
def test_over_range_checks_its_bounds_and_chunk_count(
    params: dict[str, Any], field: str, message: str
) -> None:
    made = build(span, split=over_range("n", start="start", max_size=1000))
    with pytest.raises(ValidationError) as caught:
        made.clean_params({"chunks": 1, **params})
    assert caught.value.message_dict[field] == [message]


@pytest.mark.parametrize(("count", "chunks"), [(1, 1), (10, 3), (10, 10), (1000, 7)])
def test_over_items_gives_every_item_once_and_each_spec_only_its_own(
    count: int, chunks: int
) -> None:
    def echo(words: list[str], suffix: str = "!") -> list[str]:
        return [word + suffix for word in words]

    made = build(echo, split=over_items("words"))
    words = [f"w{i}" for i in range(count)]
    specs = made.split(made.clean_params({"words": words, "chunks": chunks}))
    assert len(specs) == chunks
    assert [len(spec["items"]) for spec in specs] == [
        count * (i + 1) // chunks - count * i // chunks for i in range(chunks)
    ]
    assert all("words" not in spec["params"] for spec in specs)
    assert run_all(made, {"words": words, "chunks": chunks}) == [w + "!" for w in words]


def test_seeded_shares_sum_to_the_total_and_streams_are_reproducible() -> None:
    def draws(rng: random.Random, samples: Annotated[int, Range(1, 10**6)] = 10) -> list[float]:
        return [rng.random() for _ in range(samples)]

    made = build(draws, split=seeded(share="samples"), name="draws")
    params = made.clean_params({"samples": 101, "chunks": 4, "seed": 9})
    specs = made.split(params)
    assert [spec["samples"] for spec in specs] == [25, 25, 25, 26]
    assert sum(spec["samples"] for spec in specs) == 101
    first = run_all(made, {"samples": 101, "chunks": 4, "seed": 9})
    assert len(first) == 101
    assert run_all(made, {"samples": 101, "chunks": 4, "seed": 9}) == first
    assert run_all(made, {"samples": 101, "chunks": 4, "seed": 10}) != first
    stream = seeded_stream("draws", 9, 0)
    assert first[:25] == [stream.random() for _ in range(25)]
    with pytest.raises(ValidationError) as caught:
        made.clean_params({"samples": 3, "chunks": 4})
    assert caught.value.message_dict["chunks"] == ["Must be at most Samples (3)."]


def test_seeded_without_share_repeats_the_function_once_per_chunk() -> None:
    def once(rng: random.Random, sides: Annotated[int, Range(2, 100)] = 6) -> int:
        return rng.randint(1, sides)

    made = build(once, combine="histogram", split=seeded())
    specs = made.split(made.clean_params({"chunks": 5}))
    assert [spec["index"] for spec in specs] == [0, 1, 2, 3, 4]
    assert all(spec["params"] == {"sides": 6} for spec in specs)
    rolls = [made.run(spec, lambda done, total: None) for spec in specs]
    assert all(1 <= roll <= 6 for roll in rolls)


@pytest.fixture
def lines_upload() -> Iterator[Callable[[bytes], dict[str, Any]]]:
    names: list[str] = []

    def store(content: bytes) -> dict[str, Any]:
        name = default_storage.save("uploads/test/lines.txt", ContentFile(content))
        names.append(name)
        return {"id": 1, "name": "lines.txt", "size": len(content), "storage_name": name}

    yield store
    for name in names:
        default_storage.delete(name)


@pytest.mark.parametrize("chunks", [1, 2, 3, 8, 50])
@pytest.mark.parametrize(
    "content",
    [
        "".join(f"line {i} é\n" for i in range(40)).encode(),
        b"one\r\ntwo\r\nthree",
        b"\n\nafter two empty lines\n",
    ],
)
def test_over_lines_reads_every_line_once_cut_at_line_ends(
    lines_upload: Callable[[bytes], dict[str, Any]], content: bytes, chunks: int
) -> None:
    def lines(rows: list[str], file: Upload, prefix: str = "") -> list[str]:
        assert file.name == "lines.txt"
        return [prefix + row for row in rows]

    made = build(lines, split=over_lines("file"))
    upload = lines_upload(content)
    params = made.clean_params({"file": upload["id"], "chunks": chunks})
    specs = made.split(params | {"file": upload})
    assert 1 <= len(specs) <= chunks
    assert all(set(spec) == {"index", "storage_name", "start", "stop", "params"} for spec in specs)
    received = [made.run(spec, lambda done, total: None) for spec in specs]
    expected = content.decode().replace("\r\n", "\n").removesuffix("\n").split("\n")
    assert list(itertools.chain.from_iterable(received)) == expected


def test_over_lines_adds_the_upload_field_when_the_function_does_not_declare_it() -> None:
    def count(rows: list[str]) -> int:
        return len(rows)

    made = build(count, split=over_lines("corpus"), combine="sum")
    assert isinstance(field_of(made, "corpus"), UploadField)
    assert made.upload_fields() == ["corpus"]


def test_progress_reaches_a_function_that_declares_it() -> None:
    def steps(numbers: range, progress: Callable[[float, float], None], n: int = 4) -> int:
        for done, _ in enumerate(numbers, start=1):
            progress(done, len(numbers))
        return len(numbers)

    made = build(steps, split=over_range("n"), combine="sum")
    assert "progress" not in made.form_class.base_fields
    calls: list[tuple[float, float]] = []
    (spec,) = made.split(made.clean_params({"n": 4, "chunks": 1}))
    assert made.run(spec, lambda done, total: calls.append((done, total))) == 4
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


# --- reducers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "partials", "result"),
    [
        ("sum", [1, 2, 3.5], 6.5),
        ("sum", [{"a": 1, "b": 2}, {"a": 3, "c": 1}], {"a": 4, "b": 2, "c": 1}),
        ("sum", [], 0),
        ("concat", [[1], [], [2, 3]], [1, 2, 3]),
        ("min", [3, None, 1, 2], 1),
        ("max", [3, None, 1, 2], 3),
        ("max", [None, None], None),
        ("mean", [1, 2, 3, 4], {"mean": 2.5, "std_error": math.sqrt(5 / 3 / 4), "n": 4}),
        ("mean", [[1, 2], [3], [4]], {"mean": 2.5, "std_error": math.sqrt(5 / 3 / 4), "n": 4}),
        ("mean", [7], {"mean": 7.0, "std_error": None, "n": 1}),
        ("histogram", [{"x": 1}, {"x": 2, "y": 5}], {"x": 3, "y": 5}),
        ("histogram", [[1, 0, 2], [0, 1, 1]], [1, 1, 3]),
    ],
)
def test_named_reducers(name: str, partials: list[Any], result: Any) -> None:
    assert REDUCERS[name](partials) == result


@pytest.mark.parametrize(
    ("name", "partials", "message"),
    [
        ("sum", [1, "2"], "sum: partial 1 is a str, not a number."),
        ("sum", [{"a": 1}, {"a": [2]}], "sum: partial 1['a'] is a list, not a number."),
        ("concat", [[1], 2], "concat: partial 1 is a int, not a list."),
        ("histogram", [[1, 2], [1]], "histogram: partial 1 has 1 counts, partial 0 has 2."),
        ("mean", [1, None], "mean: partial 1 is None, not a number."),
    ],
)
def test_named_reducers_name_the_partial_they_cannot_fold(
    name: str, partials: list[Any], message: str
) -> None:
    with pytest.raises(ReduceError) as caught:
        REDUCERS[name](partials)
    assert str(caught.value) == message


def test_combine_display_finishes_job_and_the_rest_of_the_class() -> None:
    def find(numbers: range, n: Annotated[int, Range(1, 1000)] = 100) -> int | None:
        """Finds a multiple of 7.

        The first one, in any chunk."""
        return next((x for x in numbers if x and x % 7 == 0), None)

    made = build(
        find,
        split=over_range("n"),
        combine=lambda params, partials: {"n": params["n"], "found": [p for p in partials if p]},
        display=lambda result: ResultDisplay(figures=[("Found", str(result["found"]))]),
        finishes_job=lambda partial: partial is not None,
        time_limit_s=30,
        estimate_seconds=lambda params: params["n"] / 1000,
    )
    assert (made.name, made.label) == ("find", "Find")
    assert made.description == "Finds a multiple of 7.\n\nThe first one, in any chunk."
    assert vars(type(made))["time_limit_s"] == 30
    assert made.estimate_seconds({"n": 500}) == 0.5
    assert made.finishes_job(7)
    assert not made.finishes_job(None)
    result = run_all(made, {"n": 30, "chunks": 3})
    assert result == {"n": 30, "found": [7, 14, 21]}
    display = made.result_display({}, result)
    assert display is not None
    assert display.figures == [("Found", "[7, 14, 21]")]


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        kinds.unregister(name)


def test_the_decorator_registers_the_kind_and_leaves_the_function_as_it_is(
    registered: list[str],
) -> None:
    def squares(numbers: range, n: Annotated[int, Range(1, 10**6)] = 100) -> int:
        return sum(i * i for i in numbers)

    decorated = kind(split=over_range("n"), combine="sum", name="test_squares", label="Squares")(
        squares
    )
    registered.append("test_squares")
    assert decorated is squares
    assert squares(range(4)) == 14
    made = kinds.get("test_squares")
    assert isinstance(made, FunctionKind)
    assert made.label == "Squares"
    assert run_all(made, {"n": 1000, "chunks": 7}) == sum(i * i for i in range(1000))


# --- the built-in kinds ported to the short form give what their classes gave ---------------------


def test_ported_montecarlo_pi_gives_the_class_versions_numbers() -> None:
    made = kinds.get("montecarlo_pi")
    assert isinstance(made, FunctionKind)
    # Computed by the class version (before the port) for the same parameters.
    assert run_all(made, {"samples": 200_000, "chunks": 7, "seed": 42}) == {
        "estimate": 3.13508,
        "std_error": 0.0036821144697035155,
        "inside": 156_754,
        "samples": 200_000,
    }
    result = run_all(made, {"samples": 1000, "chunks": 3, "seed": 5})
    assert result == {"estimate": 3.208, "std_error": 0.050405713961811906, "inside": 802,
                      "samples": 1000}  # fmt: skip
    display = made.result_display({}, result)
    assert display is not None
    assert display.figures == [
        ("Estimate of π", "3.208 ± 0.050"),
        ("Error from π", "+0.066"),
        ("Points inside", "802 of 1,000"),
    ]
    assert list(made.form_class.base_fields) == ["samples", "chunks", "seed"]


def test_ported_primes_gives_the_class_versions_numbers() -> None:
    made = kinds.get("primes")
    assert isinstance(made, FunctionKind)
    clean = made.clean_params({"start": 12_345, "stop": 543_210, "chunks": 5})
    partials = [made.run(spec, lambda done, total: None) for spec in made.split(clean)]
    assert partials == [{"count": 9700}, {"count": 8821}, {"count": 8481}, {"count": 8247},
                        {"count": 8092}]  # fmt: skip
    assert made.combine(clean, partials) == {"count": 43_341}
    display = made.result_display(clean, {"count": 43_341})
    assert display is not None
    assert display.figures == [
        ("Primes found", "43,341"),
        ("Range", "from 12,345 up to 543,210 (exclusive)"),
    ]
    assert made.clean_params({}) == {"start": 0, "stop": 600_000_000, "chunks": 12}
