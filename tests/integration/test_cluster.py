"""Heartbeats, per-core CPU and throughput, from real prefork workers through Redis."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil
import pytest
from django.contrib.auth.models import User
from django.db import transaction

from jobs import services
from jobs.engine import workers
from jobs.models import Chunk
from jobs.protocol import ClusterState
from tests.processes import ServerProcess
from tests.waiting import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for_cluster(
    predicate: Callable[[ClusterState], object], timeout: float = 15
) -> ClusterState:
    """Poll the cluster state (it is sampled once a second) until predicate holds."""
    deadline = time.monotonic() + timeout
    while True:
        state = workers.cluster_state()
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"cluster never reached the expected state: {state}")
        time.sleep(0.2)


def worker_children(worker: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(worker.process.pid).children()}


def test_worker_processes_report_busy_and_idle(alice: User, celery_worker: ServerProcess) -> None:
    with transaction.atomic():
        job = services.job_create(
            owner=alice, kind="burn", params={"chunks": 2, "ms": 3000}, parallelism=2
        )
    wait_until(job.pk, lambda: Chunk.objects.filter(job_id=job.pk, status="running").count() == 2)
    state = wait_for_cluster(
        lambda s: (
            sum(1 for p in s["processes"] if p["state"] == "busy" and p["job_id"] == job.pk) == 2
        )
    )
    busy = {p["pid"] for p in state["processes"] if p["job_id"] == job.pk}
    assert busy <= worker_children(celery_worker)
    node = state["nodes"][0]
    assert len(node["cpus"]) == psutil.cpu_count()
    assert all(0 <= value <= 100 for value in node["cpus"])
    wait_for_job(job.pk, until={"succeeded"})
    state = wait_for_cluster(
        lambda s: all(p["state"] != "busy" for p in s["processes"] if p["pid"] in busy)
    )
    assert sum(count for _, count in state["throughput"]) >= 2


def test_a_killed_process_is_shown_as_lost(celery_worker: ServerProcess) -> None:
    children = worker_children(celery_worker)
    wait_for_cluster(lambda s: children <= {p["pid"] for p in s["processes"]})
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    state = wait_for_cluster(
        lambda s: any(p["pid"] == victim and p["state"] == "lost" for p in s["processes"]),
        timeout=10,
    )
    assert time.monotonic() - killed_at < workers.LOST_AFTER_S + 2
    # The pool replaces the process, and the replacement reports itself.
    wait_for_cluster(
        lambda s: any(p["pid"] not in children and p["state"] != "lost" for p in s["processes"])
    )
    assert state["processes"]
