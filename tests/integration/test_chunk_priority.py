"""Chunk processes run at a lower CPU priority than everything else on their machine
(COREBOARD_CHUNK_NICE, issue 20 item 4), with real prefork workers."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest
from django.contrib.auth.models import User

from jobs import kinds
from jobs.models import Job
from tests.factories import make_job
from tests.processes import start_celery_worker
from tests.waiting import wait_for_chunk_running_on, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _thread_niceness(pid: int) -> dict[str, int]:
    """Each thread's nice value (Linux keeps one per thread), by thread name."""
    niceness = {}
    for thread in psutil.Process(pid).threads():
        task = psutil.Process(thread.id)
        niceness[f"{task.name()}:{thread.id}"] = task.nice()
    return niceness


@pytest.fixture(autouse=True)
def _probe_kind() -> Iterator[None]:
    """Probe jobs: only the worker a test starts has the kind (the suite's shared worker,
    alive once an integration test started it, would take a burn job)."""
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        yield


def _niceness_while_a_chunk_runs(
    child_env: dict[str, str], alice: User, chunk_nice: str
) -> tuple[int, dict[str, int]]:
    """The worker's main process's nice value, and every thread's of the child running
    a chunk (keepalive, heartbeat and publisher started by then)."""
    from tests import kinds_probe

    kinds_env = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_probe"
    worker = start_celery_worker(
        {**child_env, "COREBOARD_JOB_KINDS": kinds_env, "COREBOARD_CHUNK_NICE": chunk_nice},
        concurrency=1,
    )
    try:
        children = {child.pid for child in worker.children()}
        job = make_job(alice, kinds_probe.NAME, parallelism=1, committed=True, chunks=2, ms=1500)
        wait_for_chunk_running_on(job.pk, children)
        pid = job.chunks.get(status="running").pid
        assert pid is not None
        threads = _thread_niceness(pid)
        main = psutil.Process(worker.process.pid).nice()
        job = wait_for_job(job.pk, until={"succeeded", "failed", "cancelled"})
        assert job.status == Job.Status.SUCCEEDED, job.error
        return main, threads
    finally:
        worker.stop()


def test_chunk_processes_run_at_the_configured_lower_priority(
    alice: User, child_env: dict[str, str]
) -> None:
    ours = psutil.Process().nice()
    main, threads = _niceness_while_a_chunk_runs(child_env, alice, "7")
    assert main == ours  # the main process (stopper, reconciler) keeps its priority
    assert len(threads) >= 3, threads  # the chunk's thread and the child's own threads
    assert set(threads.values()) == {min(19, ours + 7)}, threads


def test_chunk_nice_zero_leaves_the_priority_alone(alice: User, child_env: dict[str, str]) -> None:
    main, threads = _niceness_while_a_chunk_runs(child_env, alice, "0")
    assert set(threads.values()) == {main}, threads
