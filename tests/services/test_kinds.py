from __future__ import annotations

import io
import itertools
import math
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from jobs import kinds
from jobs.kinds.burn import InjectedFailure
from jobs.kinds.hash_search import digest
from jobs.kinds.primes import count_primes
from jobs.kinds.wordcount import count_words
from tests.factories import SMALL_MANDELBROT, generated_text

pytestmark = pytest.mark.services


def run_kind(name: str, params: dict[str, Any]) -> Any:
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
        ({"start": 10, "stop": 10, "chunks": 1}, "stop", "greater than Start"),
        ({"start": 0, "stop": 10**11 + 1, "chunks": 1}, "stop", "less than or equal to"),
        ({"start": 0, "stop": 2 * 10**10, "chunks": 1}, "stop", "at most 10,000,000,000"),
        ({"start": 0, "stop": 5, "chunks": 6}, "chunks", "at most the size of the range"),
        ({"start": 0, "stop": 100, "chunks": 0}, "chunks", "greater than or equal to 1"),
        ({"start": 0, "stop": 10**7, "chunks": 200_000}, "chunks", "less than or equal to 100000"),
        ({"start": "x", "stop": 100, "chunks": 1}, "start", "JSON integer"),
        ({"start": None, "stop": 100, "chunks": 1}, "start", "required"),
        ({"start": 0, "stop": 100, "chunks": 1, "step": 2}, "step", "Unknown parameter"),
    ],
)
def test_primes_rejects_bad_params_naming_the_field(
    params: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("primes").clean_params(params)
    assert message in " ".join(caught.value.message_dict[field])


def test_burn_spins_every_chunk_for_its_time_and_sums_the_iterations() -> None:
    kind = kinds.get("burn")
    params = kind.clean_params({"chunks": 3, "ms": 5})
    began = time.perf_counter()
    partials = [kind.run(spec, lambda done, total: None) for spec in kind.split(params)]
    assert time.perf_counter() - began >= 3 * 0.005
    assert all(partial["iterations"] > 0 for partial in partials)
    assert kind.combine(params, partials) == {
        "chunks": 3,
        "iterations": sum(partial["iterations"] for partial in partials),
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
def test_burn_rejects_bad_params(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("burn").clean_params(params)
    assert field in caught.value.message_dict


def test_unknown_kind_is_a_lookup_error() -> None:
    with pytest.raises(kinds.UnknownKind):
        kinds.get("nope")


# --- montecarlo_pi -------------------------------------------------------------------------------


def test_montecarlo_same_params_give_the_same_estimate() -> None:
    params = {"samples": 200_000, "chunks": 7, "seed": 42}
    first = run_kind("montecarlo_pi", params)
    assert run_kind("montecarlo_pi", params) == first
    assert first["samples"] == 200_000
    assert abs(first["estimate"] - math.pi) < 5 * first["std_error"]
    assert 0 < first["std_error"] < 0.01
    assert run_kind("montecarlo_pi", {**params, "seed": 43}) != first


def test_montecarlo_streams_differ_per_chunk() -> None:
    kind = kinds.get("montecarlo_pi")
    specs = kind.split(kind.clean_params({"samples": 2_000, "chunks": 2, "seed": 1}))
    assert [s["samples"] for s in specs] == [1_000, 1_000]
    first, second = (kind.run(s, lambda done, total: None) for s in specs)
    assert first != second


def test_montecarlo_rejects_more_chunks_than_samples() -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("montecarlo_pi").clean_params({"samples": 3, "chunks": 4, "seed": 1})
    assert "at most Samples" in caught.value.message_dict["chunks"][0]


# --- mandelbrot --------------------------------------------------------------------------------


def mandelbrot_png(chunks: int) -> bytes:
    kind = kinds.get("mandelbrot")
    params = kind.clean_params({**SMALL_MANDELBROT, "chunks": chunks})
    partials = [kind.run(spec, lambda done, total: None) for spec in kind.split(params)]
    produced = kind.result_file(params, partials)
    assert produced is not None
    assert produced.content_type == "image/png"
    return produced.data


def test_mandelbrot_png_has_the_requested_size_and_ignores_chunking() -> None:
    one, eight = mandelbrot_png(1), mandelbrot_png(8)
    assert one == eight
    image = Image.open(io.BytesIO(one))
    assert image.size == (64, 48)
    assert image.getpixel((44, 24)) == 0  # c = -0.11 - 0.03i lies inside the set: black
    assert image.getpixel((0, 0)) != 0


def test_mandelbrot_preview_is_one_band() -> None:
    kind = kinds.get("mandelbrot")
    params = kind.clean_params({**SMALL_MANDELBROT, "chunks": 4})
    spec = kind.split(params)[1]
    preview = kind.preview(params, spec, kind.run(spec, lambda done, total: None))
    assert preview is not None
    assert Image.open(io.BytesIO(preview.data)).size == (64, 12)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"x_max": -3.0}, "x_max"),
        ({"y_max": -1.2}, "y_max"),
        ({"width": 4096, "height": 4096}, "height"),
        ({"chunks": 49}, "chunks"),
        ({"max_iter": 10**6}, "max_iter"),
    ],
)
def test_mandelbrot_rejects_bad_params(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("mandelbrot").clean_params({**SMALL_MANDELBROT, "chunks": 4, **change})
    assert field in caught.value.message_dict


# --- wordcount ---------------------------------------------------------------------------------


@pytest.fixture
def stored_text(settings: Any, tmp_path: Path) -> dict[str, Any]:
    settings.MEDIA_ROOT = tmp_path
    text = generated_text(20_000)
    data = text.encode()
    (tmp_path / "book.txt").write_bytes(data)
    return {"text": text, "upload": {"id": 1, "name": "book.txt", "size": len(data),
                                     "storage_name": "book.txt"}}  # fmt: skip


@pytest.mark.parametrize("chunks", [1, 16, 97])
def test_wordcount_equals_a_single_process_count(stored_text: dict[str, Any], chunks: int) -> None:
    kind = kinds.get("wordcount")
    params = {"upload": stored_text["upload"], "chunks": chunks, "top": 5}
    specs = kind.split(params)
    assert len(specs) == chunks
    assert specs[0]["start"] == 0
    assert specs[-1]["stop"] == stored_text["upload"]["size"]
    partials = [kind.run(spec, lambda done, total: None) for spec in specs]
    expected = count_words(stored_text["text"])
    result = kind.combine(params, partials)
    assert result["total_words"] == sum(expected.values())
    assert result["distinct_words"] == len(expected)
    assert result["top"] == [
        [w, c] for w, c in sorted(expected.items(), key=lambda i: (-i[1], i[0]))[:5]
    ]
    assert "日本語" in expected
    assert "it's" in expected


# --- hash_search -------------------------------------------------------------------------------


def test_hash_search_finds_a_nonce_that_verifies() -> None:
    result = run_kind("hash_search", {"prefix": "coreboard", "difficulty": 3, "chunks": 4})
    assert result["hash"] == digest("coreboard", result["nonce"])
    assert result["hash"].startswith("000")


def test_hash_search_first_find_finishes_the_job() -> None:
    kind = kinds.get("hash_search")
    assert kind.finishes_job({"nonce": 5, "hash": "000abc"})
    assert not kind.finishes_job({"nonce": None, "hash": None})
    assert kind.combine({}, [{"nonce": None, "hash": None}, {"nonce": 9, "hash": "00f"}]) == {
        "nonce": 9,
        "hash": "00f",
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prefix": "x", "difficulty": 8, "chunks": 1}, "difficulty"),
        ({"prefix": "x", "difficulty": 0, "chunks": 1}, "difficulty"),
        ({"prefix": "x" * 200, "difficulty": 1, "chunks": 1}, "prefix"),
        ({"prefix": "a\nb", "difficulty": 1, "chunks": 1}, "prefix"),
        ({"prefix": "x", "difficulty": 1, "chunks": 5000}, "chunks"),
    ],
)
def test_hash_search_rejects_bad_params(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kinds.get("hash_search").clean_params(params)
    assert field in caught.value.message_dict
