"""Kinds and capabilities with real workers: slots go only to workers that have the job's
kind, a job nobody can run waits with a reason until one comes, and an all-processes job
follows the cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.test import APIClient

from jobs import kinds, services
from jobs.engine import workers
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.waiting import poll_until, wait_for_job, wait_until

FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def probe_kind() -> Iterator[str]:
    """The `probe` kind, registered in this process for the test only (the suite's shared
    worker does not have it)."""
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        yield kinds_probe.NAME


def _probe_env(child_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {**child_env, **extra}
    env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_probe"
    return env


def _pids(worker: ServerProcess) -> set[int]:
    return {child.pid for child in worker.children()}


def _stop(*workers: ServerProcess) -> None:
    for worker in workers:
        worker.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_without_the_kind_never_runs_its_chunks(
    alice: User, child_env: dict[str, str], probe_kind: str
) -> None:
    capable = start_celery_worker(_probe_env(child_env), concurrency=1)
    # Has the module, but is told to run burn only: it must not take probe chunks.
    lacking = start_celery_worker(
        _probe_env(child_env, COREBOARD_WORKER_KINDS="burn"), concurrency=2
    )
    try:
        job = make_job(alice, probe_kind, parallelism=8, committed=True, chunks=12, ms=150)
        job = wait_for_job(job.pk, until=FINAL, timeout=60)
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.result == {"chunks": 12}
        ran_on = set(job.chunks.values_list("pid", flat=True))
        assert ran_on <= _pids(capable)
        assert not ran_on & _pids(lacking)
        assert set(job.chunks.values_list("attempts", flat=True)) == {1}
    finally:
        _stop(capable, lacking)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_job_nobody_can_run_waits_with_a_reason_then_runs(
    alice: User, child_env: dict[str, str], probe_kind: str
) -> None:
    node = f"lacking-{uuid.uuid4().hex[:6]}"
    lacking = start_celery_worker(
        _probe_env(child_env, COREBOARD_WORKER_KINDS="burn"), 1, node=node
    )
    capable = None
    try:
        job = make_job(alice, probe_kind, parallelism=2, committed=True, chunks=4, ms=50)
        created = time.time()

        def waiting_reason() -> str | None:
            waiting = selectors.job_live(Job.objects.get(pk=job.pk))["waiting"]
            return waiting["reason"] if waiting else None

        poll_until(lambda: waiting_reason() == "no_worker_with_kind", timeout=10)
        api = APIClient()
        api.force_authenticate(alice)
        shown = api.get(f"/api/jobs/{job.pk}/").json()
        assert shown["status"] == "pending"
        assert shown["waiting"]["text"] == "Waiting: no live worker has the kind 'probe'"
        # Three reconciler passes later (the worker beats before each), nothing has been
        # tried, let alone failed.
        poll_until(
            lambda: any(
                name.startswith(node) and beat > created + 3
                for name, beat in workers.workers_seen().items()
            ),
            timeout=10,
        )
        assert waiting_reason() == "no_worker_with_kind"
        assert not Chunk.objects.filter(job_id=job.pk).exclude(status="pending").exists()
        assert not Chunk.objects.filter(job_id=job.pk, attempts__gt=0).exists()
        capable = start_celery_worker(_probe_env(child_env), concurrency=1)
        job = wait_for_job(job.pk, until=FINAL, timeout=60)
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert set(job.chunks.values_list("pid", flat=True)) <= _pids(capable)
        assert selectors.job_as_api_dict(job)["waiting"] is None
    finally:
        _stop(lacking, *([capable] if capable else []))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_an_all_processes_job_takes_a_machine_that_joins_mid_job(
    alice: User, child_env: dict[str, str], probe_kind: str
) -> None:
    first = start_celery_worker(_probe_env(child_env), concurrency=1)
    second = None
    try:
        with transaction.atomic():  # parallelism left out: all processes
            job = services.job_create(
                owner=alice, kind=probe_kind, params={"chunks": 40, "ms": 400}
            )
        assert job.parallelism == Job.ALL_PROCESSES
        wait_until(job.pk, lambda: Job.objects.get(pk=job.pk).done_chunks >= 2)
        assert selectors.job_live(Job.objects.get(pk=job.pk))["processes_now"] == 1
        second = start_celery_worker(_probe_env(child_env), concurrency=1)
        assert Job.objects.get(pk=job.pk).done_chunks < 30, "too late to show anything"
        job = wait_for_job(job.pk, until=FINAL, timeout=60)
        assert job.status == Job.Status.SUCCEEDED, job.error
        ran_on = set(job.chunks.values_list("pid", flat=True))
        assert ran_on & _pids(first)
        assert ran_on & _pids(second)
        # Its efficiency is measured against the 2 processes it used.
        used = Job.objects.with_timings().get(pk=job.pk)
        assert used.processes_used == 2
        assert used.efficiency == pytest.approx(used.speedup / 2)  # type: ignore[operator]
    finally:
        _stop(first, *([second] if second else []))
