"""The execution engine with real processes: slots, leases, the reconciler, fair share."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from jobs import services
from jobs.engine import dispatch, redis_clients, slot_registry
from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.processes import start_celery_worker
from tests.waiting import wait_for_chunk_running_on, wait_for_job, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]

FINAL = {"succeeded", "failed", "cancelled"}


def test_a_lost_worker_machine_costs_seconds_not_the_job(
    alice: User, child_env: dict[str, str]
) -> None:
    victim = start_celery_worker(child_env, concurrency=2)
    victim_pids = {child.pid for child in victim.children()}
    job = make_job(alice, "burn", parallelism=4, committed=True, chunks=10, ms=1500)
    wait_for_chunk_running_on(job.pk, victim_pids)
    victim.kill_all()  # the whole machine goes, never restarted
    killed_at = time.monotonic()
    job = wait_for_job(job.pk, until=FINAL, timeout=60)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert time.monotonic() - killed_at < 30
    assert job.done_chunks == 10
    assert job.chunks.filter(status="done").count() == 10
    assert job.result is not None
    assert job.result["chunks"] == 10
    redone = job.chunks.filter(attempts__gt=1)
    assert redone.exists()
    assert not redone.filter(pid__in=victim_pids).exists()


def test_losing_the_brokers_data_mid_job_is_repaired(alice: User) -> None:
    job = make_job(alice, "burn", parallelism=2, committed=True, chunks=24, ms=250)
    wait_until(job.pk, lambda: Job.objects.get(pk=job.pk).done_chunks >= 2)
    redis_clients.broker().flushdb()
    flushed_at = time.monotonic()
    job = wait_for_job(job.pk, until=FINAL, timeout=60)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert time.monotonic() - flushed_at < 30
    assert job.result is not None
    assert job.result["chunks"] == 24
    assert job.done_chunks == 24
    assert job.chunks.filter(status="done").count() == 24


def test_a_duplicate_slot_message_runs_nothing_twice(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test registers and sends the job's one slot itself, twice.
    monkeypatch.setattr(dispatch, "job_dispatch", lambda *, job_id: 0)
    token = uuid.uuid4().hex
    with transaction.atomic():
        job = services.job_create(
            owner=alice, kind="burn", params={"chunks": 6, "ms": 200}, parallelism=1
        )
        redis_clients.broker().hset(slot_registry.registry_key(job.pk), token, "q|0")
    for _ in range(2):
        current_app.send_task(slot_registry.SLOT_TASK, args=[job.pk, token])
    job = wait_for_job(job.pk, until=FINAL)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done_chunks == 6
    assert set(job.chunks.values_list("attempts", flat=True)) == {1}


def test_a_small_job_is_not_stuck_behind_a_big_one(alice: User, bob: User) -> None:
    big = make_job(alice, "burn", parallelism=64, committed=True, chunks=40, ms=500)
    wait_until(big.pk, lambda: Job.objects.get(pk=big.pk).done_chunks >= 2)
    small = make_job(bob, "burn", parallelism=1, committed=True, chunks=1, ms=100)
    small = wait_for_job(small.pk, until=FINAL, timeout=60)
    assert small.status == Job.Status.SUCCEEDED
    big.refresh_from_db()
    # Bob's chunk ran while most of Alice's job was still to do.
    assert big.status == Job.Status.RUNNING
    assert big.done_chunks < 30
    # The big job never had more slots than there are worker processes.
    assert len(slot_registry.slots_of(big.pk)) <= 2
    services.job_cancel(job=big)


def test_cancel_leaves_no_chunk_running_or_pending(alice: User) -> None:
    job = make_job(alice, "burn", parallelism=2, committed=True, chunks=200, ms=20)
    wait_until(job.pk, lambda: Job.objects.get(pk=job.pk).done_chunks >= 10)
    assert services.job_cancel(job=job)
    cancelled_at = timezone.now()
    wait_until(
        job.pk,
        lambda: (
            not Chunk.objects.filter(job_id=job.pk, status__in=Chunk.UNFINISHED_STATUSES).exists()
        ),
        timeout=10,
    )
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    # A chunk already claimed in a batch may start until the slot's next look at the
    # job's status (every COREBOARD_CANCEL_POLL_MS), never later.
    late = cancelled_at + timedelta(milliseconds=settings.COREBOARD_CANCEL_POLL_MS + 250)
    assert not job.chunks.filter(started_at__gt=late).exists()
    assert job.chunks.filter(status="cancelled").count() > 100
