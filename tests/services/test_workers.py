"""The worker registry: one process id, one lost threshold, one drain flag."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
import redis
from celery import current_app

from jobs.engine import slot_registry, workers
from jobs.services import nodes

pytestmark = [pytest.mark.services]

INFO = workers.node_info(concurrency=2, queues=["coreboard"], node_kinds=["burn"])


@pytest.fixture
def node() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:6]}@host"
    yield name
    workers.node_remove(name)


def _silent_since(node: str, seconds: float) -> None:
    workers.client().zadd(workers.NODES, {node: time.time() - seconds})


def test_a_process_id_names_its_node_pid_and_boot() -> None:
    process = workers.process_id(node="alpha@h1", pid=42)
    assert process == f"alpha@h1|42|{workers.boot_id()}"
    assert workers.process_node(process) == "alpha@h1"


def test_only_a_gone_process_of_this_machine_is_known_to_be_gone() -> None:
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert workers.process_is_gone(workers.process_id(node="a@h", pid=gone.pid))
    assert not workers.process_is_gone(workers.process_id(node="a@h", pid=os.getpid()))
    # Another machine's process (another boot id) is never known to be gone from here.
    assert not workers.process_is_gone(f"a@h|{gone.pid}|another")
    assert not workers.process_is_gone("not a process id")


def test_a_node_silent_for_the_lost_threshold_is_lost_everywhere(node: str) -> None:
    workers.node_beat(node, info=INFO, cpus=[10.0])
    assert workers.live_workers()[node] == workers.LiveWorker(
        concurrency=2, kinds=frozenset({"burn"})
    )
    assert workers.node_get(node)["state"] == "active"  # type: ignore[index]
    _silent_since(node, workers.LOST_AFTER_S + 0.5)
    assert node not in workers.live_workers()
    assert workers.node_get(node)["state"] == "lost"  # type: ignore[index]
    # A slot its worker reserved is lost with it; a running slot refreshed just as long ago
    # is lost too.
    reserved = slot_registry.SlotState("t", f"v|{node}")
    assert not reserved.is_live(now=time.time(), live_nodes=set(workers.live_workers()))
    stale = time.time() - workers.LOST_AFTER_S - 0.5
    running = slot_registry.SlotState("t", f"r|{node}|{node}|1|boot|{stale:.3f}")
    assert running.phase == "r"
    assert running.process == f"{node}|1|boot"
    assert not running.is_live(now=time.time(), live_nodes=set())


def test_a_node_that_only_claimed_its_name_is_not_shown(node: str) -> None:
    assert workers.node_claim(node, process=workers.process_id(node=node)) is None
    assert workers.node_get(node) is None
    workers.node_beat(node, info=INFO, cpus=[])
    assert workers.node_get(node) is not None


def test_resume_ends_an_operators_drain_but_not_a_shutdown(node: str) -> None:
    workers.node_beat(node, info=INFO, cpus=[])
    workers.node_draining_set(node, draining="drain")
    assert workers.node_is_draining(node)
    shown = workers.node_get(node)
    assert shown is not None
    assert (shown["state"], shown["draining"]) == ("drained", True)
    workers.node_draining_set(node, draining=None)
    assert not workers.node_is_draining(node)
    assert workers.node_get(node)["state"] == "active"  # type: ignore[index]

    workers.node_draining_set(node, draining="stop")
    workers.node_draining_set(node, draining="drain")
    workers.node_draining_set(node, draining=None)
    assert workers.node_is_draining(node)
    assert workers.node_get(node)["state"] == "stopping"  # type: ignore[index]
    # A restart comes up active.
    workers.node_start(node)
    assert not workers.node_is_draining(node)


def test_a_drain_refuses_claim_permits_and_waits_for_the_claims_in_flight(node: str) -> None:
    workers.node_beat(node, info=INFO, cpus=[])
    first, second = workers.process_id(node=node, pid=11), workers.process_id(node=node, pid=12)
    assert workers.claim_permit(node, first)
    assert workers.claim_permit(node, second)
    workers.claim_done(node, second)
    workers.node_draining_set(node, draining="drain")
    # `first` is still claiming: the drain is not confirmed while it is.
    assert not workers.claims_settled(node, timeout_s=0.05)
    # No new claim once the node drains; the one in flight ends.
    assert not workers.claim_permit(node, second)
    workers.claim_done(node, first)
    assert workers.claims_settled(node, timeout_s=0.05)
    assert not workers.claim_permit(node, first)
    # A mark left by a process that died while claiming does not hold a drain up.
    workers.client().hset(
        workers.node_key(node),
        workers.CLAIMING_PREFIX + "dead",
        f"{time.time() - workers.CLAIM_MARK_MAX_AGE_S - 1:.3f}",
    )
    assert workers.claims_settled(node, timeout_s=0.05)
    assert workers.node_get(node)["state"] == "drained"  # type: ignore[index]


def test_a_clean_stop_removes_the_node_and_its_processes(node: str) -> None:
    workers.node_beat(node, info=INFO, cpus=[])
    process = workers.process_id(node=node, pid=1234)
    fields = {"node": node, "host": "h", "pid": 1234, "state": "idle", "since": time.time()}
    workers.process_beat(process, fields=fields, finished={int(time.time()): 3})
    state = workers.cluster_state()
    assert [p["id"] for p in state["processes"] if p["node"] == node] == [process]
    workers.node_remove(node)
    state = workers.cluster_state()
    assert all(n["node"] != node for n in state["nodes"])
    assert all(p["node"] != node for p in state["processes"])


def _held_by(node: str, process: str, machine: str) -> None:
    workers.client().hset(
        workers.node_key(node),
        mapping={workers.NODE_PROCESS_FIELD: process, workers.NODE_MACHINE_FIELD: machine},
    )


def test_a_name_another_machine_holds_is_never_beaten_drained_or_removed_by_another(
    node: str,
) -> None:
    other = f"{node}|7|otherboot"
    _held_by(node, other, "0ther000")
    # Silent for longer than the liveness window: its lease still holds.
    _silent_since(node, workers.LOST_AFTER_S + 60)
    assert workers.node_beat(node, info=INFO, cpus=[]) == other
    assert "started" not in workers.client().hgetall(workers.node_key(node))
    workers.node_draining_set(node, draining="stop")
    assert not workers.node_is_draining(node)
    assert not workers.node_leave(node, process=workers.process_id(node=node))
    assert workers.client().hget(workers.node_key(node), workers.NODE_PROCESS_FIELD) == other
    # A worker started with that name runs as name-2, on a card of its own.
    renamed = workers.node_name_candidates(node)[1]
    try:
        assert workers.node_take(node) == (renamed, None)
        assert workers.node_beat(renamed, info=INFO, cpus=[]) is None
        assert workers.node_leave(renamed, process=workers.process_id(node=renamed))
        assert workers.node_get(renamed) is None
    finally:
        workers.node_remove(renamed)


def test_this_machines_name_is_taken_over_after_a_reboot_but_refused_while_it_runs(
    node: str,
) -> None:
    _held_by(node, f"{node}|7|earlierboot", workers.machine_id())
    assert workers.node_take(node) == (node, None)
    assert workers.client().hget(workers.node_key(node), workers.NODE_PROCESS_FIELD) == (
        workers.process_id(node=node)
    )
    # A live worker of this machine (here: pid 1 of this boot) is a second start: refused.
    running = workers.process_id(node=node, pid=1)
    _held_by(node, running, workers.machine_id())
    assert workers.node_take(node) == (node, workers.NodeHolder(running, workers.machine_id()))


def test_a_consumer_change_on_a_dead_pooled_connection_is_sent_again_on_a_fresh_one() -> None:
    sent: list[object] = []

    def change(queue: str, **ask: object) -> list[dict[str, object]]:
        sent.append(ask.get("connection"))
        if len(sent) == 1:
            raise redis.ConnectionError("Connection closed by server.")
        return [{"alpha@host": {"ok": queue}}]

    assert nodes._on_a_live_connection(change, "q", "alpha@host") == [{"alpha@host": {"ok": "q"}}]
    pooled, fresh = sent
    assert pooled is None
    assert fresh is not None
    # The app's pool is left open for everything else.
    with current_app.pool.acquire(block=False) as connection:
        assert connection is not None
