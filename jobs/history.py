"""The history's sort orders: data that the filter form, the column headers and the query read.

A table, not a read: it lives below both the form (jobs.forms) and the selectors, so that
neither has to import the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import F


@dataclass(frozen=True)
class HistorySort:
    label: str
    order: tuple[Any, ...]
    # Orders by a figure that only a finished job has (duration, speedup): every pending or
    # running job is blank there, so among those the order is the tiebreak alone.
    finished_only: bool = False


# The history's orders: the filter form's choices, the sortable column headers and the
# queries all read this. Duration and speedup are the job's stored columns
# (Job.finished_wall_seconds, Job.finished_speedup), each with indexes for these orders.
HISTORY_SORTS: dict[str, HistorySort] = {
    "-created": HistorySort("Newest first", ("-created_at", "-id")),
    "created": HistorySort("Oldest first", ("created_at", "id")),
    "-duration": HistorySort(
        "Longest duration first",
        (F("finished_wall_seconds").desc(nulls_last=True), "-id"),
        finished_only=True,
    ),
    "duration": HistorySort(
        "Shortest duration first",
        (F("finished_wall_seconds").asc(nulls_last=True), "-id"),
        finished_only=True,
    ),
    "-speedup": HistorySort(
        "Highest speedup first",
        (F("finished_speedup").desc(nulls_last=True), "-id"),
        finished_only=True,
    ),
    "speedup": HistorySort(
        "Lowest speedup first",
        (F("finished_speedup").asc(nulls_last=True), "-id"),
        finished_only=True,
    ),
    # Job.peak_rss: the largest peak resident memory of the job's chunks.
    "-memory": HistorySort("Most memory first", (F("peak_rss").desc(nulls_last=True), "-id")),
    "memory": HistorySort("Least memory first", (F("peak_rss").asc(nulls_last=True), "-id")),
}
# The columns a history header can sort by, in order: `created`, `duration`, `speedup`,
# `memory`.
HISTORY_SORT_COLUMNS = tuple(dict.fromkeys(key.lstrip("-") for key in HISTORY_SORTS))
HISTORY_DEFAULT_SORT = "-created"
