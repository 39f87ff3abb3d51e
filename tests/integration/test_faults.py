"""Infrastructure faults with real processes: each part fails mid-job, the job still ends
right, counted exactly once, within 30 s of the failed part answering again.

These tests restart the suite's own PostgreSQL and Redis (tests.services_plugin), so each
one leaves them running as it found them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from coreconf import paths
from jobs import services
from jobs.engine import redis_clients
from jobs.models import Chunk, Job
from launcher import stack
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.services_plugin import SERVICES, TEST_MEDIA_ROOT, TEST_VAR
from tests.sockets import follow_job
from tests.waiting import poll_until, wait_for_chunk_running_on
from tokens.services import token_create

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]

FINAL = {"succeeded", "failed", "cancelled"}
RECOVERY_S = 30


def job_ended(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.status in FINAL else None


def assert_counted_once(job: Job, chunks: int) -> None:
    assert job.done_chunks == chunks
    assert job.chunks.filter(status="done").count() == chunks


def wait_for_end(job_id: int, since: float) -> Job:
    job = poll_until(lambda: job_ended(job_id), timeout=90)
    assert time.monotonic() - since < RECOVERY_S, "recovered too slowly"
    return job


@pytest.fixture
def redis() -> Iterator[stack.EmbeddedRedis]:
    server = SERVICES[0].redis
    if server is None:
        pytest.skip("REDIS_URL points at a Redis this suite did not start")
    yield server
    if server.process is None or server.process.poll() is not None:
        server.start()


def redis_kill(server: stack.EmbeddedRedis) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.process = None


def test_a_postgresql_restart_mid_job(alice: User) -> None:
    postgres = SERVICES[0].postgres
    if postgres is None:
        pytest.skip("DATABASE_URL points at a PostgreSQL this suite did not start")
    job = make_job(
        alice, "primes", start=0, stop=200_000_000, chunks=40, parallelism=2, committed=True
    )
    poll_until(lambda: Job.objects.get(pk=job.pk).done_chunks >= 3)
    connection.close()
    postgres.restart()
    back = time.monotonic()
    job = wait_for_end(job.pk, back)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"count": 11_078_937}
    assert_counted_once(job, 40)


def test_redis_killed_and_restarted_mid_job(alice: User, redis: stack.EmbeddedRedis) -> None:
    job = make_job(alice, chunks=30, ms=200, parallelism=2, committed=True)
    poll_until(lambda: Job.objects.get(pk=job.pk).done_chunks >= 3)
    redis_kill(redis)
    time.sleep(1.0)  # the outage itself: nothing to await
    redis.start()
    back = time.monotonic()
    job = wait_for_end(job.pk, back)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert_counted_once(job, 30)


def test_a_job_submitted_while_redis_is_down_runs_when_it_returns(
    alice: User, redis: stack.EmbeddedRedis, daphne_server: str
) -> None:
    token = token_create(user=alice, name="faults", expires_in_days=1)
    redis_kill(redis)
    request = urllib.request.Request(  # noqa: S310 - the suite's loopback daphne
        f"{daphne_server}/api/jobs/",
        data=json.dumps({"kind": "burn", "params": {"chunks": 4, "ms": 100}}).encode(),
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, body = response.status, json.load(response)
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    assert status == 201, body
    assert body["status"] == "pending"
    redis.start()
    back = time.monotonic()
    job = wait_for_end(body["id"], back)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert Job.objects.filter(owner=alice).count() == 1
    assert_counted_once(job, 4)


def test_a_worker_killed_and_restarted_mid_job(alice: User, child_env: dict[str, str]) -> None:
    victim = start_celery_worker(child_env, concurrency=2)
    victim_pids = {child.pid for child in victim.children()}
    job = make_job(alice, chunks=12, ms=1000, parallelism=4, committed=True)
    wait_for_chunk_running_on(job.pk, victim_pids)
    victim.kill_all()
    again = start_celery_worker(child_env, concurrency=2)
    try:
        job = wait_for_end(job.pk, time.monotonic())
    finally:
        again.stop()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert_counted_once(job, 12)
    assert job.result is not None
    assert job.result["chunks"] == 12


def test_cancel_then_kill_the_worker_leaves_nothing_running(
    alice: User, child_env: dict[str, str]
) -> None:
    victim = start_celery_worker(child_env, concurrency=2)
    victim_pids = {child.pid for child in victim.children()}
    job = make_job(alice, chunks=8, ms=30_000, parallelism=4, committed=True)
    wait_for_chunk_running_on(job.pk, victim_pids)
    assert services.job_cancel(job=job)
    # Killed before its slots could look at the job again: their chunks stay leased.
    victim.kill_all()
    killed = time.monotonic()
    poll_until(
        lambda: (
            not Chunk.objects.filter(job_id=job.pk, status__in=Chunk.UNFINISHED_STATUSES).exists()
        ),
        timeout=60,
    )
    assert time.monotonic() - killed < RECOVERY_S
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert set(job.chunks.values_list("status", flat=True)) == {"cancelled"}


def test_a_combine_that_fails_once_succeeds_on_retry(alice: User) -> None:
    # The result file cannot be written: `results` is a file, not a directory.
    results = TEST_MEDIA_ROOT / "results"
    aside = TEST_MEDIA_ROOT / "results-aside"
    if results.is_dir():
        results.rename(aside)
    results.write_text("in the way")
    try:
        job = make_job(
            alice,
            "mandelbrot",
            width=64,
            height=48,
            max_iter=50,
            x_min=-2.2,
            x_max=0.8,
            y_min=-1.0,
            y_max=1.0,
            chunks=4,
            parallelism=2,
            committed=True,
        )
        job = poll_until(lambda: job_ended(job.pk))
        assert job.status == Job.Status.FAILED
        assert job.error.startswith("combine failed")
        assert_counted_once(job, 4)
    finally:
        results.unlink()
        if aside.is_dir():
            aside.rename(results)
    assert services.job_retry_failed(job=job) == job
    job = poll_until(lambda: job_ended(job.pk), timeout=RECOVERY_S)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result_file
    assert_counted_once(job, 4)
    assert set(job.chunks.values_list("attempts", flat=True)) == {1}  # nothing ran again
    shutil.rmtree(aside, ignore_errors=True)


def test_a_viewer_connected_through_a_flushall_ends_on_the_real_final_state(
    alice: User,
) -> None:
    job = make_job(alice, chunks=30, ms=200, parallelism=2, committed=True)

    def flush_mid_job() -> None:
        poll_until(lambda: Job.objects.get(pk=job.pk).done_chunks >= 3)
        redis_clients.broker().flushall()

    flusher = threading.Thread(target=flush_mid_job)
    flusher.start()
    messages = follow_job(job.pk, alice, until=FINAL)
    flusher.join()
    job.refresh_from_db()
    received_at, last = messages[-1]
    assert last["job"]["status"] == "succeeded"
    assert last["job"]["done_chunks"] == 30
    assert job.finished_at is not None
    assert received_at - job.finished_at.timestamp() < 10
    assert_counted_once(job, 30)


def test_a_viewer_of_a_big_job_gets_few_snapshots(alice: User) -> None:
    job = make_job(alice, chunks=2000, ms=1, parallelism=2, committed=True)
    messages = follow_job(job.pk, alice, until=FINAL)
    snapshots = [m for _, m in messages if m["type"] == "job.snapshot"]
    assert messages[-1][1]["job"]["status"] == "succeeded"
    assert 1 <= len(snapshots) <= 3


def test_ctrl_c_of_make_run_mid_chunk_then_start_again() -> None:
    """`make run` (launcher.run) on its own embedded services: Ctrl-C while chunks run
    stops everything within the warm-shutdown wait plus a cold shutdown, and the job goes
    on when the stack starts again (20 s chunks stand for long ones: long enough that a
    slow poll on a loaded machine still sends Ctrl-C well before they end)."""
    var = TEST_VAR / "make-run"
    shutil.rmtree(var, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        COREBOARD_VAR_DIR=str(var),
        COREBOARD_PG_PORT=str(stack.free_port()),
        COREBOARD_REDIS_PORT=str(stack.free_port()),
        PORT=str(stack.free_port()),
        COREBOARD_WORKER_CONCURRENCY="2",
        COREBOARD_STOP_WAIT_S="3",
        PYTHONUNBUFFERED="1",
    )

    def start() -> ServerProcess:
        run = ServerProcess([sys.executable, "-m", "launcher.run"], env, "make run")
        run.wait_for_line("Press Ctrl-C to stop.", timeout=180)
        return run

    def django(code: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
            cwd=paths.BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def job_state(job_id: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            django(
                "import json; from jobs.models import Job; j = Job.objects.get(pk=" + job_id + "); "
                "print(json.dumps({'status': j.status, 'done': j.done_chunks, 'running': "
                "j.chunks.filter(status='running').count(), 'attempts': "
                "sorted(j.chunks.values_list('attempts', flat=True))}))"
            )
        )
        return state

    run = start()
    try:
        job_id = django(
            "from django.contrib.auth.models import User; from jobs import services; "
            "u = User.objects.get_or_create(username='carol')[0]; "
            "print(services.job_create(owner=u, kind='burn', "
            "params={'chunks': 2, 'ms': 20000}, parallelism=2).pk)"
        )
        poll_until(lambda: job_state(job_id)["running"] == 2, timeout=60, every=0.5)
        run.process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        assert run.process.wait(timeout=60) == 0
        assert time.monotonic() - stopped < 30
        run = start()
        back = time.monotonic()
        state = poll_until(
            lambda: (s := job_state(job_id))["status"] in FINAL and s, timeout=90, every=0.5
        )
        assert time.monotonic() - back < RECOVERY_S + 20  # 20 s: the chunks run again
        assert state == {"status": "succeeded", "done": 2, "running": 0, "attempts": [2, 2]}
    finally:
        run.stop()
        shutil.rmtree(var, ignore_errors=True)
