"""Leases and locks under faults, with real processes: a database restart does not orphan a
job's chunks on a worker process that goes on running another job, and a worker frozen
while it holds a job's lock stalls that job's other workers for about a second.

The probe kind is one only these tests' workers have, so the suite's shared worker (if a
test before started it) takes none of these jobs.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest
from django.contrib.auth.models import User
from django.db import connection

from jobs import kinds, services
from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.services_plugin import SERVICES
from tests.waiting import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FINAL = {"succeeded", "failed", "cancelled"}
# The promises: a job ends within this long of PostgreSQL answering again, and a
# frozen lock holder stalls the other workers of its job at most this long.
RECOVERY_S = 10
STALL_MAX_S = 2
FREEZE_S = 4


@pytest.fixture
def probe_kind() -> Iterator[str]:
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        yield kinds_probe.NAME


def _probe_worker(child_env: dict[str, str], concurrency: int) -> ServerProcess:
    env = {**child_env}
    env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_probe"
    return start_celery_worker(env, concurrency)


def _ended(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.status in FINAL else None


def _assert_counted_once(job: Job, chunks: int) -> None:
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"chunks": chunks}
    assert job.done_chunks == chunks
    assert job.chunks.filter(status=Chunk.Status.DONE).count() == chunks


def _cancel_active(*jobs: Job) -> None:
    for job in Job.objects.filter(pk__in=[job.pk for job in jobs], status__in=Job.ACTIVE_STATUSES):
        services.job_cancel(job=job)


def test_a_postgresql_restart_mid_job_beside_a_long_job_on_the_same_process(
    alice: User, child_env: dict[str, str], probe_kind: str
) -> None:
    postgres = SERVICES[0].postgres
    if postgres is None:
        pytest.skip("DATABASE_URL points at a PostgreSQL this suite did not start")
    # One process: the two jobs' slots take turns on it (a slice each).
    worker = _probe_worker(child_env, concurrency=1)
    neighbour = make_job(alice, probe_kind, chunks=300, ms=200, parallelism=1, committed=True)
    job = neighbour
    try:
        poll_until(lambda: Job.objects.get(pk=neighbour.pk).done_chunks >= 1)
        job = make_job(alice, probe_kind, chunks=3, ms=1000, parallelism=1, committed=True)

        def mid_chunk() -> bool:
            running = job.chunks.filter(status=Chunk.Status.RUNNING).exists()
            return running and Job.objects.get(pk=job.pk).done_chunks >= 1

        # Restarted while one of the job's chunks runs: the restart hits the job's slot.
        poll_until(mid_chunk, every=0.05)
        connection.close()
        postgres.restart()
        back = time.monotonic()
        ended = poll_until(lambda: _ended(job.pk), timeout=90, every=0.1)
        took = time.monotonic() - back
        print(f"job ended {took:.1f} s after PostgreSQL was back")
        assert took < RECOVERY_S
        _assert_counted_once(ended, 3)
        assert Job.objects.get(pk=neighbour.pk).status == Job.Status.RUNNING, "still beside it"
    finally:
        _cancel_active(neighbour, job)
        worker.stop()


def _tcp_ports(pid: int, server_port: int) -> set[int]:
    """The local ports of `pid`'s connections to the database server."""
    return {
        conn.laddr.port
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == server_port
    }


def _holds_a_job_lock_silently(ports: set[int]) -> bool:
    """Whether one of these client ports' sessions sits idle in a transaction that holds
    a row lock on a job (FOR UPDATE or UPDATE of jobs_job)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
            WHERE a.client_port = ANY(%s) AND a.state = 'idle in transaction'
              AND l.relation = 'jobs_job'::regclass
              AND l.mode IN ('RowShareLock', 'RowExclusiveLock') AND l.granted
            """,
            [sorted(ports)],
        )
        return cursor.fetchone() is not None


def _freeze_holding_the_lock(pid: int, tries: int = 2000) -> float:
    """SIGSTOP `pid` at a moment it holds its job's lock; when (time.time())."""
    server_port = int(connection.settings_dict["PORT"])
    for _ in range(tries):
        ports = _tcp_ports(pid, server_port)
        os.kill(pid, signal.SIGSTOP)
        if ports and _holds_a_job_lock_silently(ports):
            return time.time()
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.005)  # let it run on to another moment
    raise AssertionError(f"process {pid} was never caught holding its job's lock")


def _longest_gap(times: list[float], start: float, end: float) -> float:
    points = [start, *sorted(t for t in times if start < t < end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def test_a_worker_frozen_while_holding_a_jobs_lock_stalls_the_others_briefly(
    alice: User, child_env: dict[str, str], probe_kind: str
) -> None:
    worker = _probe_worker(child_env, concurrency=2)
    job = make_job(alice, probe_kind, chunks=1000, ms=15, parallelism=2, committed=True)
    frozen: int | None = None
    try:

        def both_running() -> list[int] | None:
            pids = {
                pid
                for pid in job.chunks.filter(
                    status__in=[Chunk.Status.RUNNING, Chunk.Status.DONE]
                ).values_list("pid", flat=True)
                if pid is not None
            }
            return sorted(pids) if len(pids) == 2 else None

        frozen, other = poll_until(both_running, every=0.05)
        frozen_at = _freeze_holding_the_lock(frozen)
        try:
            time.sleep(FREEZE_S)  # the freeze itself: nothing to await
        finally:
            thawed_at = time.time()
            os.kill(frozen, signal.SIGCONT)
        # The frozen process's session was ended; it records its batch again and goes on.
        ended = poll_until(lambda: _ended(job.pk), timeout=120, every=0.2)
        _assert_counted_once(ended, 1000)
        finished = [
            at.timestamp()
            for at in job.chunks.filter(pid=other).values_list("finished_at", flat=True)
            if at is not None
        ]
        stall = _longest_gap(finished, frozen_at, thawed_at)
        print(f"other process stalled {stall:.2f} s by a {FREEZE_S} s freeze")
        assert stall <= STALL_MAX_S
        assert set(job.chunks.values_list("pid", flat=True)) == {frozen, other}
    finally:
        if frozen is not None and psutil.pid_exists(frozen):
            os.kill(frozen, signal.SIGCONT)
        _cancel_active(job)
        worker.stop()
