"""Three worker nodes on one machine (distinct Celery node names, as on three machines): a
job spreads over all of them, one node dies mid-job without costing the job, another stops
cleanly without a trace. tests/integration/test_cluster_setup.py runs a worker in its own network
namespace; these run as plain processes so that they work wherever the suite runs."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
from django.contrib.auth.models import User

from jobs.engine import workers
from jobs.models import Chunk, Job
from jobs.protocol import ClusterState, NodeState
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.waiting import poll_until, wait_for_chunk_running_on, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOST_WITHIN_S = 5
RECOVERED_WITHIN_S = 30
PRIMES_BELOW_1E9 = 50_847_534
FINAL = {"succeeded", "failed", "cancelled"}


def _pids(worker: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(worker.process.pid).children()}


def _node(state: ClusterState, name: str) -> NodeState | None:
    return next((node for node in state["nodes"] if node["node"] == name), None)


@pytest.fixture
def three_nodes(child_env: dict[str, str]) -> Iterator[dict[str, ServerProcess]]:
    host = socket.gethostname()
    names = [f"{letter}-{uuid.uuid4().hex[:6]}@{host}" for letter in "abc"]
    nodes = {name: start_celery_worker(child_env, concurrency=1, node=name) for name in names}
    yield nodes
    for name, worker in nodes.items():
        worker.stop()
        workers.node_remove(name)


def test_a_job_runs_on_three_nodes_and_survives_losing_one(
    alice: User, three_nodes: dict[str, ServerProcess]
) -> None:
    names = list(three_nodes)

    def all_active() -> ClusterState | None:
        state = workers.cluster_state()
        active = all((node := _node(state, name)) and node["state"] == "active" for name in names)
        return state if active else None

    state = poll_until(all_active, timeout=15, every=0.1)
    for name in names:
        node = _node(state, name)
        assert node is not None
        assert node["code_version"] == workers.code_version()
        assert "primes" in node["kinds"]
        assert "burn" in node["kinds"]

    job = make_job(
        alice, "primes", parallelism=6, committed=True, start=0, stop=1_000_000_000, chunks=30
    )
    job = wait_for_job(job.pk, until=FINAL, timeout=120)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"count": PRIMES_BELOW_1E9}
    ran_on = set(job.chunks.values_list("pid", flat=True))
    for name, worker in three_nodes.items():
        assert ran_on & _pids(worker), f"no chunk ran on {name}"

    # Every process of one node killed at once mid-job, as if its machine died.
    victim_name, victim = names[2], three_nodes[names[2]]
    job = make_job(alice, "burn", parallelism=6, committed=True, chunks=30, ms=400)
    wait_for_chunk_running_on(job.pk, _pids(victim))
    victim.kill_all()
    killed_at = time.monotonic()
    poll_until(
        lambda: (node := _node(workers.cluster_state(), victim_name)) and node["state"] == "lost",
        timeout=LOST_WITHIN_S + 5,
        every=0.1,
    )
    assert time.monotonic() - killed_at < LOST_WITHIN_S
    job = wait_for_job(job.pk, until=FINAL, timeout=RECOVERED_WITHIN_S + 30)
    assert time.monotonic() - killed_at < RECOVERED_WITHIN_S
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done_chunks == 30
    assert job.chunks.filter(status=Chunk.Status.DONE).count() == 30
    assert isinstance(job.result, dict)
    assert job.result["chunks"] == 30

    # A clean stop of another node leaves no lost process behind.
    stopped_name = names[1]
    three_nodes[stopped_name].stop()
    state = workers.cluster_state()
    assert _node(state, stopped_name) is None
    assert [p for p in state["processes"] if p["node"] == stopped_name] == []
    survivor = _node(state, names[0])
    assert survivor is not None
    assert survivor["state"] == "active"
