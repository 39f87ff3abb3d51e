"""End to end with real PostgreSQL, Redis and a `celery worker --pool=prefork` (2 processes)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.contrib.auth.models import User

from jobs import services
from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.sockets import follow_job
from tests.waiting import wait_for_job, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]


def test_primes_job_counts_right_on_several_processes(alice: User) -> None:
    job = make_job(alice, "primes", start=0, stop=200_000_000, chunks=16, committed=True)
    job = wait_for_job(job.pk, until={"succeeded", "failed"})
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"count": 11_078_937}
    assert job.done_chunks == 16
    chunks = list(job.chunks.all())
    assert len({c.pid for c in chunks}) >= 2
    assert all(c.attempts == 1 and c.cpu_seconds and c.worker for c in chunks)
    # The job's figures are its chunks': CPU time summed, wall time spanning them all.
    assert job.cpu_seconds == pytest.approx(sum(c.cpu_seconds or 0 for c in chunks))
    starts = [c.started_at for c in chunks if c.started_at is not None]
    ends = [c.finished_at for c in chunks if c.finished_at is not None]
    assert len(starts) == len(ends) == len(chunks)
    assert job.started_at is not None
    assert job.started_at <= min(starts)
    assert job.finished_at is not None
    assert job.finished_at >= max(ends)


def test_killed_worker_process_mid_chunk_still_succeeds(alice: User) -> None:
    job = make_job(alice, chunks=4, ms=1500, parallelism=2, committed=True)
    running = wait_until(
        job.pk, lambda: Chunk.objects.filter(job_id=job.pk, status="running", index=0).first()
    )
    assert running.pid is not None
    os.kill(running.pid, signal.SIGKILL)
    job = wait_for_job(job.pk, until={"succeeded", "failed"})
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done_chunks == 4
    assert job.result is not None
    assert job.result["chunks"] == 4
    redone = job.chunks.get(index=0)
    assert redone.attempts == 2
    assert redone.pid != running.pid


def test_cancel_stops_running_and_queued_chunks(alice: User) -> None:
    job = make_job(alice, chunks=10, ms=30_000, parallelism=2, committed=True)
    wait_until(job.pk, lambda: Chunk.objects.filter(job_id=job.pk, status="running").count() == 2)
    requested = time.monotonic()
    assert services.job_cancel(job=job)
    wait_until(
        job.pk,
        lambda: not Chunk.objects.filter(job_id=job.pk, status=Chunk.Status.RUNNING).exists(),
        timeout=10,
    )
    assert time.monotonic() - requested < 2.5
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert set(job.chunks.values_list("status", flat=True)) == {"cancelled"}
    assert not job.chunks.filter(started_at__gt=job.finished_at).exists()


def test_failing_chunk_is_retried_then_fails_the_job(alice: User) -> None:
    job = make_job(alice, chunks=2, ms=50, fail_rate=1, parallelism=1, committed=True)
    job = wait_for_job(job.pk, until={"succeeded", "failed"})
    assert job.status == Job.Status.FAILED
    assert "Traceback (most recent call last)" in job.error
    assert "InjectedFailure: burn: injected failure in chunk 0" in job.error
    failed = job.chunks.get(index=0)
    assert failed.status == Chunk.Status.FAILED
    assert failed.attempts == 3  # the first run and COREBOARD_CHUNK_MAX_RETRIES=2 retries
    assert job.chunks.get(index=1).status == Chunk.Status.CANCELLED


def test_websocket_follows_a_real_job_to_completion(alice: User) -> None:
    job = make_job(alice, chunks=4, ms=400, parallelism=2, committed=True)

    messages = [message for _, message in follow_job(job.pk, alice, until={"succeeded"})]
    assert messages[0]["type"] == "job.snapshot"
    progress = [m for m in messages[1:] if m["type"] == "job.progress"]
    assert progress
    seqs = [m["seq"] for m in progress]
    # Worker processes publish independently, so deltas may arrive out of order; each is
    # relayed once and all are newer than the snapshot.
    assert len(set(seqs)) == len(seqs)
    assert min(seqs) > messages[0]["seq"]
    partial = [c["progress"] for m in progress for c in m["chunks"] if "progress" in c]
    assert any(0 < p < 1 for p in partial)
    assert messages[-1]["job"]["progress"] == 1.0
    assert messages[-1]["job"]["done_chunks"] == 4
