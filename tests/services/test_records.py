"""Files cut by arithmetic, records found by the chunk (jobs.kinds.records): every record read
by exactly one chunk, so wordcount and over_lines equal a serial pass for any chunk count."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import kinds
from jobs.kinds.function import function_kind, over_lines
from jobs.kinds.records import Records, byte_ranges
from jobs.kinds.wordcount import WORD_SHOWN_MAX, WORDS, count_words

pytestmark = pytest.mark.services

# Words, every kind of separator, inner apostrophes, `_`, and multibyte characters (2, 3 and
# 4 bytes) that a byte-range cut lands inside.
PIECES = [
    "word", "Wörd", "it's", "don\u2019t", "snake_case", "日本語", "🙂", "é", "ß", "x",
    " ", "\n", "\r\n", "\t", "  ", "\u3000", ",", ".", "'", "-", "(", ")", "\u00a0", "9",
]  # fmt: skip
texts = st.lists(st.sampled_from(PIECES), max_size=60).map("".join) | st.text(max_size=80)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def chunk_ranges(records: Records, data: bytes, chunks: int) -> list[tuple[int, int]]:
    handle = io.BytesIO(data)
    return [
        records.owned_range(handle, start, stop) for start, stop in byte_ranges(len(data), chunks)
    ]


@pytest.fixture
def stored(settings: Any, tmp_path: Path) -> Callable[[bytes], dict[str, Any]]:
    """Writes bytes where default_storage finds them; the upload as `split` receives it."""
    settings.MEDIA_ROOT = tmp_path

    def store(data: bytes) -> dict[str, Any]:
        (tmp_path / "file.txt").write_bytes(data)
        return {"id": 1, "name": "file.txt", "size": len(data), "storage_name": "file.txt"}

    return store


def wordcount_counts(upload: dict[str, Any], chunks: int) -> Counter[str]:
    kind = kinds.get("wordcount")
    params = {"upload": upload, "chunks": chunks, "top": 5}
    total: Counter[str] = Counter()
    for spec in kind.split(params):
        total.update(kind.run(spec, lambda done, total: None))
    return total


def lines_of(text: str) -> list[str]:
    """A serial reading of a file's lines, as over_lines gives them."""
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")] if text else []


@pytest.fixture
def lines_kind() -> Any:
    def rows(lines: list[str]) -> list[str]:
        return lines

    return function_kind(rows, split=over_lines("file"), combine="concat")()


# --- the ranges ----------------------------------------------------------------------------------


@SETTINGS
@given(data=st.binary(max_size=200), chunks=st.integers(1, 300))
def test_byte_ranges_cover_the_file_in_at_most_one_range_per_byte(data: bytes, chunks: int) -> None:
    ranges = byte_ranges(len(data), chunks)
    assert len(ranges) == max(1, min(chunks, len(data)))
    assert ranges[0][0] == 0
    assert ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


@SETTINGS
@given(text=texts, chunks=st.integers(1, 300))
def test_owned_ranges_partition_the_file_at_record_starts(text: str, chunks: int) -> None:
    data = text.encode()
    owned = [r for r in chunk_ranges(WORDS, data, chunks) if r[0] < r[1]]
    assert b"".join(data[a:b] for a, b in owned) == data
    assert all(a[1] == b[0] for a, b in itertools.pairwise(owned))
    for start, _ in owned:
        assert start == 0 or data[start - 1] in WORDS.separators
        data[start:].decode()  # never inside a UTF-8 sequence


def test_a_record_longer_than_every_range_belongs_to_the_chunk_it_starts_in() -> None:
    data = b"a" * 1000
    assert chunk_ranges(WORDS, data, 10) == [(0, 1000)] + [(r, r) for r in range(200, 1001, 100)]


def test_ranges_past_the_end_of_a_shorter_file_own_nothing() -> None:
    data = b"one two"

    def owned(start: int, stop: int) -> bytes:
        first, end = WORDS.owned_range(io.BytesIO(data), start, stop)
        assert start <= first <= end
        return data[first:end]

    assert (owned(0, 3), owned(3, 20), owned(5, 20), owned(10, 20)) == (b"one ", b"two", b"", b"")


def test_records_refuse_separators_that_can_sit_inside_a_utf8_sequence() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        Records("é".encode())


# --- wordcount -----------------------------------------------------------------------------------


@SETTINGS
@given(text=texts, chunks=st.integers(1, 300))
def test_wordcount_equals_a_serial_count_for_any_chunk_count(
    stored: Callable[[bytes], dict[str, Any]], text: str, chunks: int
) -> None:
    upload = stored(text.encode())
    assert wordcount_counts(upload, chunks) == count_words(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a" * 100_000, 1),  # whitespace-free: one word, whatever the chunks
        ("日本語" * 5_000, 1),  # multibyte, no separator: every cut inside a word
        ("🙂,é " * 3_000, 3_000),  # a 4-byte character with no word, 2-byte words
        ("x", 1),  # fewer bytes than chunks
        ("", 0),  # an empty file: one chunk, nothing in it
        ("line one\r\nline two\r\n" * 1_000, 4_000),
    ],
)
@pytest.mark.parametrize("chunks", [1, 7, 256])
def test_wordcount_edge_files(
    stored: Callable[[bytes], dict[str, Any]], text: str, words: int, chunks: int
) -> None:
    upload = stored(text.encode())
    counts = wordcount_counts(upload, chunks)
    assert counts == count_words(text)
    assert sum(counts.values()) == words


def test_wordcount_split_never_opens_the_file() -> None:
    # No such file, and 10 GB: a split that read it would fail or take minutes.
    upload = {"id": 1, "name": "gone.txt", "size": 10 << 30, "storage_name": "uploads/gone.txt"}
    specs = kinds.get("wordcount").split({"upload": upload, "chunks": 256, "top": 5})
    assert len(specs) == 256
    assert (specs[0]["start"], specs[-1]["stop"]) == (0, 10 << 30)


# --- over_lines ----------------------------------------------------------------------------------


@SETTINGS
@given(text=texts, chunks=st.integers(1, 300))
def test_over_lines_equals_a_serial_reading_for_any_chunk_count(
    stored: Callable[[bytes], dict[str, Any]], lines_kind: Any, text: str, chunks: int
) -> None:
    upload = stored(text.encode())
    params = lines_kind.clean_params({"file": 1, "chunks": min(chunks, 10_000)})
    specs = lines_kind.split(params | {"file": upload})
    received = [lines_kind.run(spec, lambda done, total: None) for spec in specs]
    assert list(itertools.chain.from_iterable(received)) == lines_of(text)


@pytest.mark.parametrize(
    "text",
    ["x" * 5_000 + "\n" + "y" * 3, "a\r\nb\r\n" * 100, "\n" * 50, "only one line", "日本\n語\n"],
)
def test_over_lines_edge_files(
    stored: Callable[[bytes], dict[str, Any]], lines_kind: Any, text: str
) -> None:
    upload = stored(text.encode())
    for chunks in (1, 3, 64, 10_000):
        specs = lines_kind.split(
            lines_kind.clean_params({"file": 1, "chunks": chunks}) | {"file": upload}
        )
        received = [lines_kind.run(spec, lambda done, total: None) for spec in specs]
        assert list(itertools.chain.from_iterable(received)) == lines_of(text)


def test_over_lines_split_never_opens_the_file(lines_kind: Any) -> None:
    upload = {"id": 1, "name": "gone.txt", "size": 10 << 30, "storage_name": "uploads/gone.txt"}
    params = lines_kind.clean_params({"file": 1, "chunks": 10_000})
    assert len(lines_kind.split(params | {"file": upload})) == 10_000


def test_wordcount_shows_a_long_word_cut_but_counts_it_whole(
    stored: Callable[[bytes], dict[str, Any]],
) -> None:
    long_word, other = "a" * 50_000, "a" * 49_999
    upload = stored(f"{long_word} {other} {long_word} short".encode())
    kind = kinds.get("wordcount")
    params = {"upload": upload, "chunks": 16, "top": 5}
    partials = [kind.run(spec, lambda done, total: None) for spec in kind.split(params)]
    result = kind.combine(params, partials)
    assert (result["total_words"], result["distinct_words"]) == (4, 3)
    cut = "a" * WORD_SHOWN_MAX + "…"
    assert result["top"] == [[cut, 2], [cut, 1], ["short", 1]]
