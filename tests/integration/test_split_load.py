"""Issue 21, item 1: a word count over a big upload costs the web process nothing per byte."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from jobs.kinds.wordcount import WORD_SHOWN_MAX
from jobs.models import Job
from tests.factories import client_for
from tests.processes import ServerProcess, start_daphne
from tests.split_load import CHUNKS, PREVIEWS, UPLOAD_MAX_BYTES, big_wordcount_under_load
from tests.waiting import wait_for_job
from tokens.services import token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def roomy_daphne(child_env: dict[str, str]) -> Iterator[tuple[ServerProcess, str]]:
    """A daphne that accepts a 20 MB upload (the suite's takes 256 KB)."""
    server, url = start_daphne(child_env | {"COREBOARD_UPLOAD_MAX_BYTES": str(UPLOAD_MAX_BYTES)})
    yield server, url
    server.stop()


def test_a_20_mb_whitespace_free_wordcount_leaves_other_pages_fast(
    roomy_daphne: tuple[ServerProcess, str], celery_worker: ServerProcess, alice: User, bob: User
) -> None:
    """The requests add under 100 ms to the other person's p95 (against their pace alone,
    measured just before in the same run: on a machine busy with other work that pace may
    itself be over 100 ms, so the issue's absolute figure lives in `make bench`'s big-upload
    row, tests/benchmarks/big_upload.py), and daphne's CPU for a 256-chunk preview of 20 MB
    is milliseconds (it was 126 s, and the other person's p95 6.2 s)."""
    server, url = roomy_daphne
    token = token_create(user=alice, name="big upload", expires_in_days=1).key
    cookie = f"sessionid={client_for(bob).cookies['sessionid'].value}"
    figures = big_wordcount_under_load(
        url, daphne_pid=server.process.pid, token=token, cookie=cookie
    )
    # Ended before the database is flushed, whatever the figures say.
    job = wait_for_job(figures.job_id, until={"succeeded", "failed"}, timeout=180)
    print(figures.summary())
    assert not figures.page_failures
    assert figures.preview_chunks == CHUNKS
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.total_chunks == CHUNKS
    result = job.result
    assert result is not None
    assert (result["total_words"], result["distinct_words"]) == (1, 1)
    assert result["top"] == [["a" * WORD_SHOWN_MAX + "…", 1]]
    assert figures.previews_cpu_s / PREVIEWS < 0.050, figures.summary()
    alone = figures.page_percentile(0.95, figures.baseline)
    assert figures.page_percentile(0.95) - alone < 0.100, figures.summary()
