"""The stop path with real prefork workers: a cancel ends chunks that never call
`progress` within 5 s, a chunk past its time limit fails for good and its process is
replaced, and a partial that is not JSON fails after one attempt naming its key path."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from jobs import kinds, services
from jobs.engine import workers
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.waiting import poll_until, wait_for_job

# The misbehaving kinds of tests.kinds_stop (imported by the fixture that registers them).
SPIN = "spin"
NOT_JSON = "notjson"

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FINAL = {"succeeded", "failed", "cancelled"}
FREED_WITHIN_S = 5.0


@pytest.fixture
def stop_kinds() -> Iterator[None]:
    """The misbehaving kinds, registered in this process for the test only."""
    with kinds.temporary():
        from tests import kinds_stop  # registers them on its first import

        kinds.register(kinds_stop.Spin)
        kinds.register(kinds_stop.NotJSON)
        yield


@pytest.fixture
def stop_worker(child_env: dict[str, str]) -> Iterator[tuple[ServerProcess, str]]:
    """A worker of two processes that has the misbehaving kinds (the suite's shared one
    does not, so it never takes their slots); its node name."""
    env = {**child_env, "COREBOARD_KILL_GRACE_MS": "1000"}
    env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_stop"
    node = f"stop-{uuid.uuid4().hex[:6]}"
    worker = start_celery_worker(env, concurrency=2, node=node)
    yield worker, node
    worker.stop()


def _pids(worker: ServerProcess) -> set[int]:
    return {child.pid for child in worker.children()}


def _running_pids(job_id: int) -> set[int]:
    pids = Chunk.objects.filter(job_id=job_id, status="running").values_list("pid", flat=True)
    return {pid for pid in pids if pid is not None}


def _node_processes(node: str) -> list[dict[str, object]]:
    return [
        dict(process)
        for process in workers.cluster_state()["processes"]
        if process["node"].startswith(node)
    ]


def test_cancel_frees_every_process_within_5_s_and_the_next_job_starts(
    alice: User, stop_kinds: None, stop_worker: tuple[ServerProcess, str]
) -> None:
    worker, node = stop_worker
    spinning = make_job(alice, SPIN, committed=True, parallelism=2, chunks=4)
    poll_until(lambda: len(_running_pids(spinning.pk)) == 2, timeout=30)
    spinners = _running_pids(spinning.pk)
    assert spinners <= _pids(worker)
    # Queued behind it: both processes are busy for good until the stop path frees them.
    following = make_job(alice, SPIN, committed=True, parallelism=2, chunks=4, finish_from=0)

    def waiting_text() -> str | None:
        waiting = selectors.job_live(Job.objects.get(pk=following.pk))["waiting"]
        return waiting["text"] if waiting and waiting["reason"] == "queued" else None

    assert poll_until(waiting_text, timeout=10) == (
        f"Waiting for a free worker process: all 2 are busy with job #{spinning.pk} (yours)"
    )
    assert Job.objects.get(pk=following.pk).status == "pending"

    cancelled_at = time.monotonic()
    cancelled_wall = time.time()
    services.job_cancel(job=spinning)

    def freed() -> float | None:
        processes = _node_processes(node)
        live = [p for p in processes if p["state"] != "lost"]
        if len(live) != 2 or any(p["job_id"] == spinning.pk for p in live):
            return None
        if spinners & {p["pid"] for p in processes}:
            return None
        return time.monotonic() - cancelled_at

    freed_after = poll_until(freed, timeout=30, every=0.05)
    following = wait_for_job(following.pk, until=FINAL, timeout=30)
    first_start = min(
        started for started in following.chunks.values_list("started_at", flat=True) if started
    )
    next_started_after = first_start.timestamp() - cancelled_wall
    print(
        f"\ncancel → both processes free: {freed_after:.2f} s; "
        f"→ the next job's first chunk: {next_started_after:.2f} s"
    )
    assert freed_after <= FREED_WITHIN_S
    assert next_started_after <= FREED_WITHIN_S
    assert following.status == "succeeded", following.error
    assert set(following.chunks.values_list("attempts", flat=True)) == {1}

    spinning = Job.objects.get(pk=spinning.pk)
    assert spinning.status == "cancelled"
    assert (spinning.done_chunks, spinning.failed_chunks) == (0, 0)
    assert set(spinning.chunks.values_list("status", flat=True)) == {"cancelled"}
    # The two that spun ran once each and were never handed back to run again.
    ran = spinning.chunks.filter(attempts__gt=0)
    assert sorted(ran.values_list("attempts", flat=True)) == [1, 1]
    assert set(ran.values_list("failures", flat=True)) == {0}
    # Their processes are gone and the pool replaced them.
    assert not spinners & _pids(worker)
    assert len(_pids(worker)) == 2


def test_a_chunk_past_its_time_limit_fails_for_good_and_its_process_is_replaced(
    alice: User, stop_kinds: None, stop_worker: tuple[ServerProcess, str]
) -> None:
    worker, _ = stop_worker
    job = make_job(
        alice,
        SPIN,
        committed=True,
        parallelism=1,
        chunk_time_limit_s=1,
        chunks=3,
        finish_from=1,
    )
    poll_until(lambda: _running_pids(job.pk), timeout=30)
    spinner = _running_pids(job.pk)
    job = wait_for_job(job.pk, until=FINAL, timeout=30)
    assert job.status == "failed"
    chunk = job.chunks.get(index=0)
    message = "Chunk 0 ran past its time limit of 1 s; its process was stopped."
    assert chunk.status == "failed"
    assert message in chunk.error
    assert message in job.error
    assert (chunk.attempts, chunk.failures) == (1, 0)
    assert chunk.finished_at is not None
    assert chunk.started_at is not None
    assert 1 <= (chunk.finished_at - chunk.started_at).total_seconds() < 3
    assert job.failed_chunks == 1
    poll_until(lambda: len(_pids(worker)) == 2 and not spinner & _pids(worker), timeout=10)
    # The replaced process runs the next job.
    after = make_job(alice, SPIN, committed=True, chunks=2, finish_from=0)
    after = wait_for_job(after.pk, until=FINAL, timeout=30)
    assert after.status == "succeeded", after.error


def test_a_partial_that_is_not_json_fails_after_one_attempt_naming_its_key_path(
    alice: User, stop_kinds: None, stop_worker: tuple[ServerProcess, str]
) -> None:
    job = make_job(alice, NOT_JSON, committed=True, chunks=1)
    job = wait_for_job(job.pk, until=FINAL, timeout=30)
    assert job.status == "failed"
    chunk = job.chunks.get()
    assert (chunk.status, chunk.attempts, chunk.failures) == ("failed", 1, 0)
    assert "partial['counts'][2]['seen']: a set is not JSON" in chunk.error
    assert "kind 'notjson' (tests.kinds_stop.NotJSON.run)" in chunk.error
    assert "Chunk 0 failed after 1 attempt(s)" in job.error
