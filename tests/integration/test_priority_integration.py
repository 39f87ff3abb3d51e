"""Priorities with a real prefork worker (issue 23, item 3): a high-priority job overtakes a
normal one's pending chunks, and the normal one is not starved."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from jobs import services
from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.waiting import wait_for_job, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]

FINAL = {"succeeded", "failed", "cancelled"}
# The contract (issue 23): submit → the high job's chunk started.
HIGH_START_S = 1.0


def _both_processes_busy(job_id: int) -> bool:
    return Chunk.objects.filter(job_id=job_id, status=Chunk.Status.RUNNING).count() == 2


def test_a_high_priority_job_starts_within_a_second_during_a_normal_one(
    alice: User, bob: User
) -> None:
    normal = make_job(alice, "burn", parallelism=None, committed=True, chunks=40, ms=500)
    waits = []
    try:
        for _ in range(3):
            # Both worker processes busy with the normal job's chunks.
            wait_until(normal.pk, lambda: _both_processes_busy(normal.pk), timeout=60)
            high = make_job(
                bob, "burn", parallelism=None, committed=True, priority="high", chunks=1, ms=50
            )
            high = wait_for_job(high.pk, until=FINAL, timeout=30)
            assert high.status == Job.Status.SUCCEEDED
            chunk = Chunk.objects.get(job=high)
            assert chunk.started_at is not None
            waits.append((chunk.started_at - high.created_at).total_seconds())
        normal = wait_for_job(normal.pk, until=FINAL, timeout=120)
    finally:
        if Job.objects.get(pk=normal.pk).is_active:
            services.job_cancel(job=normal)
    print(f"\nhigh job: submit → chunk started {', '.join(f'{w:.3f} s' for w in waits)}")
    assert max(waits) < HIGH_START_S
    # The normal job still finished, every chunk counted once.
    assert normal.status == Job.Status.SUCCEEDED
    assert normal.done_chunks == 40


def test_a_normal_job_finishes_while_high_ones_keep_arriving(alice: User, bob: User) -> None:
    """Bob keeps three high jobs waiting, more than the worker's two processes can take:
    without aging Alice's normal job would never run again; with it, each of its waiting
    slots moves up a step every COREBOARD_PRIORITY_AGING_S (30 s) and gets its turn."""
    normal = make_job(alice, "burn", parallelism=None, committed=True, chunks=8, ms=200)
    stop = threading.Event()
    highs: list[int] = []

    def feed() -> None:
        try:
            while not stop.is_set():
                active = Job.objects.filter(pk__in=highs, status__in=Job.ACTIVE_STATUSES)
                for _ in range(3 - active.count()):
                    job = make_job(
                        bob,
                        "burn",
                        parallelism=None,
                        committed=True,
                        priority="high",
                        chunks=4,
                        ms=250,
                    )
                    highs.append(job.pk)
                stop.wait(0.1)
        finally:
            connection.close()

    feeder = threading.Thread(target=feed, name="high-feeder")
    feeder.start()
    try:
        normal = wait_for_job(normal.pk, until=FINAL, timeout=150)
    finally:
        stop.set()
        feeder.join(10)
        for job in Job.objects.filter(pk__in=highs, status__in=Job.ACTIVE_STATUSES):
            services.job_cancel(job=job)
    assert normal.status == Job.Status.SUCCEEDED
    assert normal.done_chunks == 8
    assert normal.finished_at is not None
    # High jobs really did keep arriving, and went ahead of it meanwhile.
    finished_highs = Job.objects.filter(
        pk__in=highs, status=Job.Status.SUCCEEDED, finished_at__lt=normal.finished_at
    ).count()
    assert finished_highs >= 5
    took = (normal.finished_at - normal.created_at).total_seconds()
    print(f"\nnormal job finished after {took:.1f} s; {finished_highs} high jobs finished first")
