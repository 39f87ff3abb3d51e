"""Kinds written as one function, for the tests of pages, the API and real workers
(COREBOARD_JOB_KINDS=tests.kinds_function). Importing this module registers them; tests in
this process use `registered()`, which takes them out of the registry again afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from jobs import kinds
from jobs.kinds import Progress
from jobs.kinds.function import Help, Label, MaxLength, Range, Upload, kind, over_items, over_lines

NAME = "letter_counts"
SCALED_NAME = "scaled_sum"
VOWELS = frozenset("aeiou")


@kind(name=NAME, split=over_lines("text"), combine="histogram")
def letter_counts(
    lines: list[str],
    progress: Progress,
    text: Annotated[Upload, Help("A UTF-8 text.")],
    letters: Literal["all", "vowels"] = "all",
    repeat: Annotated[int, Range(1, 10)] = 1,
) -> dict[str, int]:
    """Counts the letters of an uploaded text, line by line."""
    counts: dict[str, int] = {}
    for done, line in enumerate(lines, start=1):
        for letter in line.casefold():
            if letter.isalpha() and (letters == "all" or letter in VOWELS):
                counts[letter] = counts.get(letter, 0) + repeat
        progress(done, len(lines))
    return counts


@kind(name=SCALED_NAME, split=over_items("values"), combine="sum")
def scaled_sum(
    values: Annotated[list[float], Range(-1000, 1000), MaxLength(100), Label("Values")],
    factor: Annotated[float, Range(0, 10)] = 1.0,
    absolute: bool = False,
) -> float:
    """Adds up the values, each times the factor."""
    return sum(abs(v) if absolute else v for v in values) * factor


# Kept so that a test can put them back in the registry after another took them out.
KINDS = {name: kinds.get(name) for name in (NAME, SCALED_NAME)}


@contextmanager
def registered() -> Iterator[None]:
    """These kinds in this process's registry, for the test only."""
    try:
        with kinds.temporary(*(type(made) for made in KINDS.values())):
            yield
    finally:
        # Importing this module registered them for good: the registry saved by
        # `temporary` had them already.
        for name in KINDS:
            kinds.unregister(name)
