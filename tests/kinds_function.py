"""A kind written as one function, for the integration test that runs it through real
workers (COREBOARD_JOB_KINDS=tests.kinds_function). Importing this module registers it."""

from __future__ import annotations

from typing import Annotated, Literal

from jobs import kinds
from jobs.kinds import Progress
from jobs.kinds.function import Help, Range, Upload, kind, over_lines

NAME = "letter_counts"
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


# Kept so that a test can put it back in the registry after removing it.
KIND = kinds.get(NAME)
