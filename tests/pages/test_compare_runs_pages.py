"""Comparing chosen jobs side by side (issue 23, item 6): parameters with their differences
marked, figures, chunk times and task streams; only jobs the viewer may see, two to
COREBOARD_COMPARE_RUNS_MAX of them, a clear error otherwise."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import Chunk
from jobs.selectors import jobs as selectors
from tests.factories import complete_next, make_job, start

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


def _finished(owner: User, **params: Any) -> int:
    job = make_job(owner, "burn", **params)
    start(job)
    for _ in range(job.total_chunks):
        complete_next(job)
    return job.pk


def _page_json(page: str, element_id: str) -> Any:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</script>', page, re.S)
    assert found is not None, element_id
    return json.loads(found[1])


def _compare(client: Client, *ids: int | str) -> tuple[int, str]:
    response = client.get("/history/compare/runs/", {"job": [str(i) for i in ids]})
    return response.status_code, response.content.decode()


def test_parameters_side_by_side_with_differences_marked(alice: User, alice_client: Client) -> None:
    one = _finished(alice, chunks=2, ms=5)
    two = _finished(alice, chunks=3, ms=5)

    status, page = _compare(alice_client, one, two)

    assert status == 200
    differs = re.findall(r'<tr class="differs">\s*<th scope="row">([^<]+)', page)
    assert [label.strip() for label in differs] == ["Chunks"]
    assert '<th scope="row">Milliseconds per chunk</th>' in page  # the same: not marked
    runs = _page_json(page, "compare-runs-data")
    assert [run["id"] for run in runs] == [one, two]
    assert [run["chunk_stats"]["count"] for run in runs] == [2, 3]
    histogram = _page_json(page, "compare-histogram")
    assert [sum(histogram["counts"][str(i)]) for i in (one, two)] == [2, 3]
    assert all(run["figures"]["total_chunks"] for run in runs)
    streams = _page_json(page, "compare-streams")
    assert [len(stream["chunks"]) for stream in streams] == [2, 3]
    assert f'id="stream-{one}"' in page


def test_chunk_times_count_every_chunk_on_shared_bins(alice: User) -> None:
    job_ids = [_finished(alice, chunks=4, ms=5), _finished(alice, chunks=2, ms=5)]
    seconds = {0: 0.1, 1: 0.2, 2: 0.3, 3: 1.1}
    for index, took in seconds.items():
        chunk = Chunk.objects.get(job_id=job_ids[0], index=index)
        assert chunk.started_at is not None
        Chunk.objects.filter(pk=chunk.pk).update(
            finished_at=chunk.started_at + timedelta(seconds=took)
        )
    for index in (0, 1):
        chunk = Chunk.objects.get(job_id=job_ids[1], index=index)
        assert chunk.started_at is not None
        Chunk.objects.filter(pk=chunk.pk).update(
            finished_at=chunk.started_at + timedelta(seconds=0.5)
        )

    stats, histogram = selectors.jobs_chunk_times(job_ids, bins=4)

    assert stats[job_ids[0]] == {"count": 4, "min": 0.1, "median": 0.25, "p90": 0.86, "max": 1.1}
    assert stats[job_ids[1]]["median"] == 0.5
    assert histogram is not None
    assert histogram["edges"] == [0.1, 0.35, 0.6, 0.85, 1.1]
    # The slowest chunk sits in the last bin, not past it.
    assert histogram["counts"] == {job_ids[0]: [3, 0, 0, 1], job_ids[1]: [0, 2, 0, 0]}


def test_another_persons_job_is_404_and_staff_see_any(
    alice: User, mallory_client: Client, staff_client: Client, mallory: User
) -> None:
    mine = _finished(mallory)
    theirs = _finished(alice)

    assert _compare(mallory_client, mine, theirs)[0] == 404
    assert _compare(mallory_client, mine, 10**9)[0] == 404
    assert _compare(staff_client, mine, theirs)[0] == 200


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ((), "Choose at least two jobs to compare"),
        (("x", "1"), "&#x27;x&#x27; is not a job number."),
        (tuple(range(1, 10)), "At most 8 jobs can be compared at once"),
    ],
)
def test_bad_choices_are_refused_naming_the_field_and_limit(
    alice_client: Client, ids: tuple[int | str, ...], message: str
) -> None:
    status, page = _compare(alice_client, *ids)

    assert status == 400
    assert f"Jobs: {message}" in page


def test_history_rows_have_compare_checkboxes(alice: User, alice_client: Client) -> None:
    job = _finished(alice)
    page = alice_client.get("/history/").content.decode()

    assert f'name="job" value="{job}" form="compare-selected"' in page
    assert 'action="/history/compare/runs/"' in page
