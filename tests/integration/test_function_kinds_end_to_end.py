"""A kind written as one function (jobs.kinds.function) through real prefork workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import services
from jobs.models import Job
from tests.factories import generated_text, make_job
from tests.processes import start_celery_worker
from tests.waiting import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def letter_counts() -> Iterator[str]:
    """The function kind, registered in this process for the test only (the suite's shared
    worker does not import it)."""
    from tests import kinds_function

    with kinds_function.registered():
        yield kinds_function.NAME


def test_a_function_kind_runs_on_real_workers_like_a_class_kind(
    alice: User, child_env: dict[str, str], letter_counts: str
) -> None:
    env = {**child_env}
    env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_function"
    worker = start_celery_worker(env, concurrency=2)
    try:
        text = generated_text(20_000)
        upload = services.upload_create(
            owner=alice, file=SimpleUploadedFile("letters.txt", text.encode())
        )
        params: dict[str, Any] = {"text": upload.pk, "letters": "vowels", "repeat": 2, "chunks": 6}
        job = make_job(alice, letter_counts, parallelism=2, committed=True, **params)
        job = wait_for_job(job.pk, until={"succeeded", "failed", "cancelled"}, timeout=60)
        assert job.status == Job.Status.SUCCEEDED, job.error
        expected = Counter(letter for letter in text.casefold() if letter in "aeiou")
        assert job.result == {letter: 2 * count for letter, count in expected.items()}
        assert job.params == params
        chunks = list(job.chunks.order_by("index"))
        assert len(chunks) == 6
        # Each spec holds its byte range, never the text; the ranges tile the file.
        assert [c.spec["start"] for c in chunks[1:]] == [c.spec["stop"] for c in chunks[:-1]]
        assert chunks[-1].spec["stop"] == len(text.encode())
        assert all(c.spec["params"]["letters"] == "vowels" for c in chunks)
        # Every chunk ran in one of this worker's prefork processes, once.
        assert {c.pid for c in chunks} <= {child.pid for child in worker.children()}
        assert {c.attempts for c in chunks} == {1}
    finally:
        worker.stop()
