"""Trustworthy health and operator controls, with real prefork workers under distinct node
names on one machine (so they share a host name, as two misnamed machines would)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import kinds
from jobs.engine import dispatch, workers
from jobs.models import Chunk
from jobs.protocol import ClusterState, NodeState, ProcessState
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.waiting import poll_until, wait_for_chunk_running_on, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOST = socket.gethostname()


def node_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}@{HOST}"


def wait_for_cluster(predicate: Callable[[ClusterState], object], timeout: float = 15) -> Any:
    """The first cluster state (polled every 0.1 s) for which predicate holds."""

    def check() -> ClusterState | None:
        state = workers.cluster_state()
        return state if predicate(state) else None

    return poll_until(check, timeout=timeout, every=0.1)


def node_of(state: ClusterState, name: str) -> NodeState | None:
    return next((node for node in state["nodes"] if node["node"] == name), None)


def processes_of(state: ClusterState, name: str) -> list[ProcessState]:
    return [p for p in state["processes"] if p["node"] == name]


def children(worker: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(worker.process.pid).children()}


@pytest.fixture
def two_workers(
    child_env: dict[str, str],
) -> Iterator[tuple[ServerProcess, str, ServerProcess, str]]:
    """alpha (labelled, with every kind the tests load) and beta (built-in kinds only)."""
    alpha_name, beta_name = node_name("alpha"), node_name("beta")
    alpha_env = {**child_env, "COREBOARD_WORKER_LABELS": "fast, rack-1"}
    beta_env = {key: value for key, value in child_env.items() if key != "COREBOARD_JOB_KINDS"}
    alpha = start_celery_worker(alpha_env, concurrency=1, node=alpha_name)
    beta = start_celery_worker(beta_env, concurrency=1, node=beta_name)
    yield alpha, alpha_name, beta, beta_name
    alpha.stop()
    beta.stop()
    # A killed node would stay on every overview (lost) for FORGET_AFTER_S.
    for name in (alpha_name, beta_name):
        workers.node_remove(name)


def test_nodes_show_identity_versions_and_kinds_then_loss_and_clean_stop(
    two_workers: tuple[ServerProcess, str, ServerProcess, str], docs_example_kind: str
) -> None:
    alpha, alpha_name, beta, beta_name = two_workers
    state = wait_for_cluster(
        lambda s: all(
            node_of(s, name) and len(processes_of(s, name)) == 1 for name in (alpha_name, beta_name)
        )
    )
    alpha_node, beta_node = node_of(state, alpha_name), node_of(state, beta_name)
    assert alpha_node
    assert beta_node
    # Same host name, two nodes: identity is the Celery node name.
    assert alpha_node["host"] == beta_node["host"] == HOST
    for node in (alpha_node, beta_node):
        assert node["state"] == "active"
        assert node["code_version"] == workers.code_version() != "unknown"
        assert node["coreboard_version"] == workers.coreboard_version()
        assert node["python_version"].count(".") == 2
        assert node["concurrency"] == 1
        # The default queue and one per kind it has (jobs.engine.dispatch.kind_queue).
        assert node["queues"] == sorted(
            {"coreboard", *(dispatch.kind_queue(kind) for kind in node["kinds"])}
        )
        assert node["started"] <= state["now"]
    assert alpha_node["labels"] == ["fast", "rack-1"]
    assert beta_node["labels"] == []
    web_kinds = {kind.name for kind in kinds.all_kinds()}
    assert set(alpha_node["kinds"]) == web_kinds
    assert alpha_node["missing_kinds"] == alpha_node["extra_kinds"] == []
    # beta lacks the kind that the web machine (and alpha) load from COREBOARD_JOB_KINDS.
    docs_kind = next(k.name for k in kinds.all_kinds() if type(k).__module__ == docs_example_kind)
    assert beta_node["missing_kinds"] == [docs_kind]

    # Every process of alpha killed at once, as if its machine died.
    alpha.kill_all()
    killed_at = time.monotonic()
    state = wait_for_cluster(
        lambda s: bool(
            (node := node_of(s, alpha_name))
            and node["state"] == "lost"
            and all(p["state"] == "lost" for p in processes_of(s, alpha_name))
        ),
        timeout=10,
    )
    assert time.monotonic() - killed_at < 5
    assert processes_of(state, alpha_name)
    assert node_of(state, beta_name)["state"] == "active"  # type: ignore[index]

    # A clean stop (SIGTERM, warm shutdown) removes beta and its processes before it exits,
    # and tells open overviews at once.
    told = watch_cluster_group()
    beta.stop()
    assert beta.process.returncode == 0
    state = workers.cluster_state()
    assert node_of(state, beta_name) is None
    assert processes_of(state, beta_name) == []
    assert told(), "open overviews were not told that the node left"


def watch_cluster_group() -> Callable[[], bool]:
    """Join the overviews' group now; the returned call says whether a `cluster.changed`
    arrived (waiting up to 5 s)."""
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(workers.CLUSTER_GROUP, channel)

    async def receive() -> bool:
        try:
            async with asyncio.timeout(5):
                while (await layer.receive(channel))["type"] != "cluster.changed":
                    pass
            return True
        except TimeoutError:
            return False
        finally:
            await layer.group_discard(workers.CLUSTER_GROUP, channel)
            await layer.close_pools()

    return lambda: async_to_sync(receive)()


def node_control(client: Client, node: str, action: str) -> Any:
    return client.post(
        reverse("jobs:node-control"),
        {"node": node, "action": action},
        HTTP_ACCEPT="application/json",
    )


def test_a_drained_node_finishes_its_chunks_and_takes_no_more_until_resumed(
    two_workers: tuple[ServerProcess, str, ServerProcess, str],
    alice: User,
    alice_client: Client,
    staff_client: Client,
) -> None:
    alpha, alpha_name, beta, beta_name = two_workers
    wait_for_cluster(lambda s: bool(node_of(s, alpha_name) and node_of(s, beta_name)))
    alpha_pids, beta_pids = children(alpha), children(beta)

    # Not staff: refused, and nothing changes.
    response = node_control(alice_client, alpha_name, "drain")
    assert response.status_code == 403
    assert not workers.node_is_draining(alpha_name)
    assert node_of(workers.cluster_state(), alpha_name)["state"] == "active"  # type: ignore[index]

    # Every live process (parallelism left out): other tests' workers may be alive too.
    job_id = make_job(alice, chunks=16, ms=300, parallelism=None, committed=True).pk
    wait_for_chunk_running_on(job_id, alpha_pids)
    response = node_control(staff_client, alpha_name, "drain")
    drained_at = timezone.now()
    assert response.status_code == 200, response.content
    assert "draining" in response.json()["message"]
    assert "did not confirm" not in response.json()["message"]
    # It finishes the chunk it was running, then shows as drained.
    wait_for_cluster(
        lambda s: node_of(s, alpha_name)["state"] == "drained",  # type: ignore[index]
        timeout=10,
    )
    wait_for_job(job_id, until={"succeeded"})
    chunks = Chunk.objects.filter(job_id=job_id)
    # `queued_at` is when a chunk was claimed (in the claim's transaction): a confirmed
    # drain waited for the claims in flight and refuses later ones, so none is after it.
    assert not chunks.filter(pid__in=alpha_pids, queued_at__gt=drained_at).exists()
    assert chunks.filter(pid__in=beta_pids, queued_at__gt=drained_at).exists()
    # The flag lives in Redis: a page loaded now still shows it.
    assert node_of(workers.cluster_state(), alpha_name)["draining"] is True  # type: ignore[index]

    response = node_control(staff_client, alpha_name, "resume")
    assert response.status_code == 200, response.content
    assert node_of(workers.cluster_state(), alpha_name)["state"] == "active"  # type: ignore[index]
    assert not workers.node_is_draining(alpha_name)
    second = make_job(alice, chunks=24, ms=300, parallelism=None, committed=True).pk
    wait_for_chunk_running_on(second, alpha_pids)
    wait_for_job(second, until={"succeeded"})


def test_node_control_checks_staff_and_names_bad_input(
    alice_client: Client, staff_client: Client
) -> None:
    assert node_control(alice_client, "nobody@nowhere", "drain").status_code == 403
    response = node_control(staff_client, "nobody@nowhere", "drain")
    assert response.status_code == 404
    assert "nobody@nowhere" in response.json()["message"]
    response = node_control(staff_client, "x" * 300, "explode")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"node", "action"}
    assert Client().get(reverse("jobs:node-control")).status_code in {302, 405}
