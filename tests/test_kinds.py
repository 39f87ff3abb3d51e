from __future__ import annotations

import itertools

import pytest
from django.core.exceptions import ValidationError

from jobs import kinds
from jobs.kinds.burn import InjectedFailure
from jobs.kinds.primes import count_primes


def run_kind(name: str, params: dict) -> object:
    kind = kinds.get(name)
    clean = kind.clean_params(params)
    partials = [kind.run(spec, lambda done, total: None) for spec in kind.split(clean)]
    return kind.combine(clean, partials)


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (0, 2, 0),
        (0, 3, 1),
        (0, 100, 25),
        (0, 1_000_000, 78_498),
        (100, 200, 21),
        (999_983, 999_984, 1),
    ],
)
def test_count_primes_known_values(start: int, stop: int, expected: int) -> None:
    assert count_primes(start, stop) == expected


def test_primes_pi_of_ten_million() -> None:
    assert run_kind("primes", {"start": 0, "stop": 10_000_000, "chunks": 4}) == {"count": 664_579}


@pytest.mark.parametrize("chunks", [1, 7, 64])
def test_primes_result_does_not_depend_on_chunk_count(chunks: int) -> None:
    assert run_kind("primes", {"start": 12_345, "stop": 543_210, "chunks": chunks}) == {
        "count": count_primes(12_345, 543_210)
    }


def test_primes_split_covers_the_range_without_overlap() -> None:
    specs = kinds.get("primes").split({"start": 10, "stop": 1_000, "chunks": 7})
    assert specs[0]["start"] == 10
    assert specs[-1]["stop"] == 1_000
    assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(specs))


def test_primes_reports_progress_up_to_the_total() -> None:
    calls: list[tuple[float, float]] = []
    count_primes(0, 1_000_000, lambda done, total: calls.append((done, total)))
    assert calls[-1] == (999_998, 999_998)
    assert len(calls) > 1


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"start": 10, "stop": 10, "chunks": 1}, "stop", "greater than start"),
        ({"start": 0, "stop": 10**11 + 1, "chunks": 1}, "stop", "less than or equal to"),
        ({"start": 0, "stop": 2 * 10**10, "chunks": 1}, "stop", "at most 10,000,000,000"),
        ({"start": 0, "stop": 5, "chunks": 6}, "chunks", "at most the size of the range"),
        ({"start": 0, "stop": 100, "chunks": 0}, "chunks", "greater than or equal to 1"),
        ({"start": 0, "stop": 100, "chunks": 20_000}, "chunks", "less than or equal to 10000"),
        ({"start": "x", "stop": 100, "chunks": 1}, "start", "whole number"),
        ({"stop": 100, "chunks": 1}, "start", "required"),
        ({"start": 0, "stop": 100, "chunks": 1, "step": 2}, "step", "Unknown parameter"),
    ],
)
def test_primes_rejects_bad_params_naming_the_field(params: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("primes").clean_params(params)
    assert message in " ".join(caught.value.message_dict[field])


def test_burn_runs_every_chunk() -> None:
    assert run_kind("burn", {"chunks": 3, "ms": 5}) == {
        "chunks": 3,
        "iterations": pytest.approx(0, abs=10**9),
    }


def test_burn_with_fail_rate_one_always_raises() -> None:
    kind = kinds.get("burn")
    spec = kind.split(kind.clean_params({"chunks": 1, "ms": 10, "fail_rate": 1}))[0]
    with pytest.raises(InjectedFailure, match="chunk 0"):
        kind.run(spec, lambda done, total: None)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"chunks": 1, "ms": 10, "fail_rate": 1.5}, "fail_rate"),
        ({"chunks": 1, "ms": -1}, "ms"),
        ({"chunks": 1, "ms": 10**7}, "ms"),
    ],
)
def test_burn_rejects_bad_params(params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("burn").clean_params(params)
    assert field in caught.value.message_dict


def test_unknown_kind_is_a_lookup_error() -> None:
    with pytest.raises(kinds.UnknownKind):
        kinds.get("nope")
