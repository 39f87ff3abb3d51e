"""wordcount: count the words of an uploaded UTF-8 text, each chunk those starting in its bytes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.files.storage import default_storage

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec, UploadField, grouped
from jobs.kinds.records import Records, byte_ranges

MAX_CHUNKS = 256
MAX_TOP = 1_000
# A longer word is shown cut, ending in "…": a file of one 20 MB word must not make a 20 MB
# result that every job page, API answer and socket snapshot carries.
WORD_SHOWN_MAX = 100
BLOCK = 4 << 20
# Words are runs of letters/digits (with inner apostrophes), case-folded.
WORD = re.compile("\\w+(?:['\u2019]\\w+)*")
# Records end after any ASCII byte that cannot be inside a word: not a letter, digit, `_` or
# `'` (ASCII's only word characters; the other apostrophe is not ASCII). Such a byte never
# occurs inside a UTF-8 sequence, and case folding works character by character, so counting
# each record range separately gives exactly the single-process count.
WORDS = Records(bytes(b for b in range(1, 128) if not (chr(b).isalnum() or chr(b) in "_'")))
# CPU seconds per byte of text counted, measured on the reference machine
# (docs/job-kinds.md, "Estimates"); text of short words in several scripts costs the most.
SECONDS_PER_BYTE = 5.0e-8


class WordCountForm(forms.Form):
    upload = UploadField(help_text="A UTF-8 text file (upload it first).")
    chunks = forms.IntegerField(
        min_value=1,
        max_value=MAX_CHUNKS,
        initial=8,
        help_text="At most one per byte of the file.",
    )
    top = forms.IntegerField(
        min_value=1, max_value=MAX_TOP, initial=20, help_text="How many of the most frequent words."
    )


def shown(word: str) -> str:
    return word if len(word) <= WORD_SHOWN_MAX else word[:WORD_SHOWN_MAX] + "…"


def count_words(text: str) -> Counter[str]:
    return Counter(WORD.findall(text.casefold()))


@register
class WordCount(JobKind):
    name = "wordcount"
    label = "Word count"
    description = (
        "Counts the words of an uploaded UTF-8 text file: total, distinct and the most "
        "frequent. The file is split into byte ranges; each chunk counts the words that "
        "start in its range."
    )
    form_class = WordCountForm

    def estimate_seconds(self, params: Params) -> float | None:
        """The file's size × the pace of counting; None (no estimate) when given an upload
        id alone rather than the upload, as only `split` is."""
        upload = params["upload"]
        return upload["size"] * SECONDS_PER_BYTE if isinstance(upload, dict) else None

    def split(self, params: Params) -> Sequence[Spec]:
        # Arithmetic only: the web process never reads the file (each chunk finds its words).
        upload = params["upload"]
        return [
            {"storage_name": upload["storage_name"], "start": start, "stop": stop}
            for start, stop in byte_ranges(upload["size"], params["chunks"])
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, int]:
        counts: Counter[str] = Counter()
        with default_storage.open(spec["storage_name"], "rb") as handle:
            first, end = WORDS.owned_range(handle, spec["start"], spec["stop"])
            for start, stop in WORDS.pieces(handle, first, end, BLOCK):
                handle.seek(start)
                counts.update(count_words(handle.read(stop - start).decode("utf-8")))
                progress(stop - first, end - first)
        return dict(counts)

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        for partial in partials:
            counts.update(partial)
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: params["top"]]
        return {
            "total_words": sum(counts.values()),
            "distinct_words": len(counts),
            "top": [[shown(word), count] for word, count in top],
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
