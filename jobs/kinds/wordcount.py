"""wordcount: count the words of an uploaded UTF-8 text, in byte ranges cut at whitespace."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import IO, Any

from django import forms
from django.core.files.storage import default_storage

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec, UploadField, grouped

MAX_CHUNKS = 256
MAX_TOP = 1_000
BLOCK = 4 << 20
# Words are runs of letters/digits (with inner apostrophes), case-folded. Cut points sit on
# ASCII whitespace, which never occurs inside a UTF-8 sequence or a word, so counting each
# range separately gives exactly the single-process count.
WORD = re.compile("\\w+(?:['\u2019]\\w+)*")
WHITESPACE = b" \t\n\r\x0b\x0c"
# CPU seconds per byte of text counted, measured on the reference machine
# (docs/job-kinds.md, "Estimates"); text of short words in several scripts costs the most.
SECONDS_PER_BYTE = 5.0e-8


class WordCountForm(forms.Form):
    upload = UploadField(help_text="A UTF-8 text file (upload it first).")
    chunks = forms.IntegerField(min_value=1, max_value=MAX_CHUNKS, initial=8)
    top = forms.IntegerField(
        min_value=1, max_value=MAX_TOP, initial=20, help_text="How many of the most frequent words."
    )


def next_cut(handle: IO[bytes], position: int, size: int) -> int:
    """The first offset >= position that starts a range: just after ASCII whitespace."""
    if position <= 0 or position >= size:
        return min(max(position, 0), size)
    handle.seek(position - 1)
    offset = position - 1
    while True:
        block = handle.read(64 * 1024)
        if not block:
            return size
        for i, byte in enumerate(block):
            if byte in WHITESPACE:
                return offset + i + 1
        offset += len(block)


def ranges(handle: IO[bytes], size: int, parts: int) -> list[tuple[int, int]]:
    cuts = [next_cut(handle, size * i // parts, size) for i in range(parts)] + [size]
    return [(cuts[i], max(cuts[i], cuts[i + 1])) for i in range(parts)]


def blocks(handle: IO[bytes], start: int, stop: int) -> Iterator[tuple[bytes, int]]:
    """The bytes of [start, stop) in pieces of about BLOCK, each ending at a cut point."""
    position = start
    while position < stop:
        end = min(stop, next_cut(handle, min(position + BLOCK, stop), stop))
        handle.seek(position)
        yield handle.read(end - position), end
        position = end


def count_words(text: str) -> Counter[str]:
    return Counter(WORD.findall(text.casefold()))


@register
class WordCount(JobKind):
    name = "wordcount"
    label = "Word count"
    description = (
        "Counts the words of an uploaded UTF-8 text file: total, distinct and the most "
        "frequent. The file is split into byte ranges cut at whitespace."
    )
    form_class = WordCountForm

    def estimate_seconds(self, params: Params) -> float | None:
        """The file's size × the pace of counting; None (no estimate) when given an upload
        id alone rather than the upload, as only `split` is."""
        upload = params["upload"]
        return upload["size"] * SECONDS_PER_BYTE if isinstance(upload, dict) else None

    def split(self, params: Params) -> Sequence[Spec]:
        upload = params["upload"]
        with default_storage.open(upload["storage_name"], "rb") as handle:
            cut = ranges(handle, upload["size"], params["chunks"])
        return [
            {"storage_name": upload["storage_name"], "start": start, "stop": stop}
            for start, stop in cut
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        counts: Counter[str] = Counter()
        start, stop = spec["start"], spec["stop"]
        with default_storage.open(spec["storage_name"], "rb") as handle:
            for data, end in blocks(handle, start, stop):
                counts.update(count_words(data.decode("utf-8")))
                progress(end - start, stop - start)
        return dict(counts)

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        for partial in partials:
            counts.update(partial)
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: params["top"]]
        return {
            "total_words": sum(counts.values()),
            "distinct_words": len(counts),
            "top": [[word, count] for word, count in top],
        }

    def result_display(self, params: Params, result: Any) -> ResultDisplay:
        return ResultDisplay(
            figures=[
                ("Words", grouped(result["total_words"])),
                ("Distinct words", grouped(result["distinct_words"])),
            ],
            table_caption=f"The {len(result['top'])} most frequent words",
            table_columns=["Rank", "Word", "Count"],
            table_rows=[
                [str(rank), word, grouped(count)]
                for rank, (word, count) in enumerate(result["top"], start=1)
            ],
        )
