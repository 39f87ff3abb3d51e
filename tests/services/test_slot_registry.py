"""The slot registry's compare-and-set scripts and the re-based sequence counter, against
the suite's real Redis: a slot registers and runs only while its token is the job's and
it runs nowhere else, so no message can put a job on more processes than its
parallelism."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from jobs import services
from jobs.engine import dispatch, events, redis_clients, slot_registry, workers
from jobs.models import Chunk, Job
from tests.factories import claim_one, make_job, start

pytestmark = [pytest.mark.services]

INFO = workers.node_info(concurrency=2, queues=["coreboard"], node_kinds=["burn"])
JOB_ID = 987_654_321  # a registry needs no job row, except where the test says so
NORMAL = dispatch.NORMAL_BROKER_PRIORITY


@pytest.fixture
def node() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:6]}@host"
    yield name
    workers.node_remove(name)


@pytest.fixture
def token() -> Iterator[str]:
    token = uuid.uuid4().hex
    yield token
    redis_clients.broker().delete(slot_registry.registry_key(JOB_ID))


@pytest.fixture
def gone_process(node: str) -> str:
    """A process id of this machine whose process has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return workers.process_id(node=node, pid=child.pid)


def _state(job_id: int, token: str) -> str | None:
    value = redis_clients.broker().hget(slot_registry.registry_key(job_id), token)
    return None if value is None else str(value)


def _register(job_id: int, token: str, value: str) -> None:
    redis_clients.broker().hset(slot_registry.registry_key(job_id), token, value)


def test_a_reservation_never_overwrites_a_running_slot(node: str, token: str) -> None:
    # Unknown (stale, or a duplicate beyond the parallelism): nothing is registered.
    assert not slot_registry.slot_reserved(JOB_ID, token, node)
    assert _state(JOB_ID, token) is None
    _register(JOB_ID, token, "q|1.0")
    assert slot_registry.slot_reserved(JOB_ID, token, node)
    assert _state(JOB_ID, token) == f"v|{node}"
    # A redelivered message reserved by another node: still only reserved.
    assert slot_registry.slot_reserved(JOB_ID, token, "other@host")
    me = workers.process_id(node=node)
    assert slot_registry.slot_begin(JOB_ID, token, node, me) == slot_registry.BEGUN
    running = _state(JOB_ID, token)
    assert running is not None
    assert running.startswith(slot_registry.running_prefix(node, me))
    # A duplicate message of the running slot is reserved by a worker: it stays running.
    assert not slot_registry.slot_reserved(JOB_ID, token, "other@host")
    assert _state(JOB_ID, token) == running


def test_a_slot_running_in_a_live_process_is_never_taken_over(node: str, token: str) -> None:
    parent = workers.process_id(node=node, pid=os.getppid())
    _register(JOB_ID, token, slot_registry.running_state(node, parent))
    before = _state(JOB_ID, token)
    me = workers.process_id(node=node)
    assert slot_registry.slot_begin(JOB_ID, token, node, me) == slot_registry.RUNNING_ELSEWHERE
    assert _state(JOB_ID, token) == before
    # Nor by a refresh, an end or a re-queue of the duplicate.
    assert not slot_registry.slot_refresh(JOB_ID, token, node, me)
    slot_registry.slot_end(JOB_ID, token, node, me)
    assert slot_registry.slot_requeue(
        JOB_ID, token, "nowhere", priority=NORMAL, node=node, process=me
    ) == (slot_registry.DISOWNED)
    assert (
        slot_registry.slot_requeue(JOB_ID, token, "nowhere", priority=NORMAL)
        == slot_registry.DISOWNED
    )
    assert _state(JOB_ID, token) == before
    # Its owner refreshes it.
    assert slot_registry.slot_refresh(JOB_ID, token, node, parent)


def test_a_registered_slot_beyond_the_parallelism_is_removed_not_run(node: str, token: str) -> None:
    """Two dispatchers that raced may register one slot too many: the second to begin
    finds the job's parallelism taken and gives its entry up."""
    first, second, third = token, uuid.uuid4().hex, uuid.uuid4().hex
    for each in (first, second, third):
        _register(JOB_ID, each, "q|1.0")
    one = workers.process_id(node=node, pid=os.getppid())
    two = workers.process_id(node=node)
    assert slot_registry.slot_begin(JOB_ID, first, node, one, parallelism=2) == (
        slot_registry.BEGUN
    )
    assert slot_registry.slot_begin(JOB_ID, second, node, two, parallelism=1) == (
        slot_registry.SURPLUS
    )
    assert _state(JOB_ID, second) is None
    assert slot_registry.slot_begin(JOB_ID, third, node, two, parallelism=2) == (
        slot_registry.BEGUN
    )
    # A running slot silent for the lost threshold no longer counts.
    silent = time.time() - workers.LOST_AFTER_S - 1
    _register(JOB_ID, first, f"{slot_registry.running_prefix(node, one)}{silent:.3f}")
    _register(JOB_ID, second, "q|1.0")
    assert slot_registry.slot_begin(JOB_ID, second, node, one, parallelism=2) == (
        slot_registry.BEGUN
    )


@pytest.mark.django_db
def test_a_slot_whose_process_is_gone_is_taken_over_and_its_chunks_handed_back(
    alice: User, node: str, gone_process: str
) -> None:
    job = make_job(alice, chunks=2, parallelism=1)
    start(job)
    claimed = claim_one(job, process=gone_process)
    token = uuid.uuid4().hex
    _register(job.pk, token, slot_registry.running_state(node, gone_process))
    me = workers.process_id(node=node)
    assert slot_registry.slot_begin(job.pk, token, node, me) == slot_registry.BEGUN
    assert str(_state(job.pk, token)).startswith(slot_registry.running_prefix(node, me))
    assert Chunk.objects.get(pk=claimed.id).status == Chunk.Status.PENDING


@pytest.mark.django_db
def test_a_silent_remote_slot_is_taken_over_only_once_it_holds_no_live_lease(
    alice: User, node: str
) -> None:
    job = make_job(alice, chunks=2, parallelism=1)
    start(job)
    remote = f"{node}|4242|another-boot"  # another machine's: never known to be gone
    claimed = claim_one(job, process=remote)
    token = uuid.uuid4().hex
    silent = time.time() - workers.LOST_AFTER_S - 1
    _register(job.pk, token, f"{slot_registry.running_prefix(node, remote)}{silent:.3f}")
    me = workers.process_id(node=node)
    # Its keepalive is late, but it still holds a chunk under a live lease: it may be
    # running it, so the slot stays its.
    assert slot_registry.slot_begin(job.pk, token, node, me) == slot_registry.RUNNING_ELSEWHERE
    Chunk.objects.filter(pk=claimed.id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert slot_registry.slot_begin(job.pk, token, node, me) == slot_registry.BEGUN


def test_a_running_slot_learns_at_its_claim_permit_that_it_lost_its_entry(
    node: str, token: str
) -> None:
    me = workers.process_id(node=node)
    other = workers.process_id(node=node, pid=os.getppid())
    _register(JOB_ID, token, "q|1.0")
    assert slot_registry.slot_begin(JOB_ID, token, node, me) == slot_registry.BEGUN
    permit = slot_registry.slot_claim_permit(JOB_ID, token, node, me)
    workers.claim_done(node, me)
    assert permit == slot_registry.ClaimPermit(owned=True, permitted=True, slots=1)
    # The job's running slots come with it (its claims' share); queued ones do not count.
    _register(JOB_ID, "other-running", slot_registry.running_state(node, other))
    _register(JOB_ID, "other-queued", "q|1.0")
    assert slot_registry.slot_claim_permit(JOB_ID, token, node, me).slots == 2
    workers.claim_done(node, me)
    for extra in ("other-running", "other-queued"):
        redis_clients.broker().hdel(slot_registry.registry_key(JOB_ID), extra)
    # A draining node refuses the claim, but the slot still owns its entry.
    workers.node_beat(node, info=INFO, cpus=[])
    workers.node_draining_set(node, draining="drain")
    assert slot_registry.slot_claim_permit(JOB_ID, token, node, me) == (
        slot_registry.ClaimPermit(owned=True, permitted=False)
    )
    workers.node_draining_set(node, draining=None)
    # Taken over by another process (a stale refresh taken over elsewhere).
    _register(JOB_ID, token, slot_registry.running_state(node, other))
    assert not slot_registry.slot_claim_permit(JOB_ID, token, node, me).owned
    workers.claim_done(node, me)
    assert str(_state(JOB_ID, token)).startswith(slot_registry.running_prefix(node, other))
    # Gone: Redis lost its data. The permit does not bring the entry back.
    redis_clients.broker().delete(slot_registry.registry_key(JOB_ID))
    assert not slot_registry.slot_claim_permit(JOB_ID, token, node, me).owned
    workers.claim_done(node, me)
    assert _state(JOB_ID, token) is None
    assert not slot_registry.slot_refresh(JOB_ID, token, node, me)
    assert _state(JOB_ID, token) is None


def test_a_running_slot_ends_and_requeues_only_its_own_entry(node: str, token: str) -> None:
    me = workers.process_id(node=node)
    queue = f"test-requeue-{token}"
    broker = redis_clients.broker()
    _register(JOB_ID, token, "q|1.0")
    assert slot_registry.slot_begin(JOB_ID, token, node, me) == slot_registry.BEGUN
    try:
        assert slot_registry.slot_requeue(
            JOB_ID, token, queue, priority=NORMAL, node=node, process=me
        ) == (slot_registry.REQUEUED)
        assert str(_state(JOB_ID, token)).startswith("q|")
        assert broker.llen(slot_registry.priority_lists([queue], [NORMAL])[0]) == 1
    finally:
        broker.delete(*slot_registry.priority_lists([queue], dispatch.PRIORITY_STEPS))
    # A message that was lost with the registry (FLUSHALL) is not brought back by a
    # re-queue: the reconciler sends the job a new one.
    broker.delete(slot_registry.registry_key(JOB_ID))
    assert slot_registry.slot_requeue(
        JOB_ID, token, queue, priority=NORMAL, node=node, process=me
    ) == (slot_registry.DISOWNED)
    assert _state(JOB_ID, token) is None
    assert broker.llen(slot_registry.priority_lists([queue], [NORMAL])[0]) == 0
    _register(JOB_ID, token, "q|1.0")
    assert slot_registry.slot_begin(JOB_ID, token, node, me) == slot_registry.BEGUN
    slot_registry.slot_end(JOB_ID, token, node, me)
    assert _state(JOB_ID, token) is None


@pytest.mark.django_db
def test_a_process_holding_chunks_without_an_entry_counts_as_a_slot(alice: User, node: str) -> None:
    """After FLUSHALL a running slot has no entry until it stops at its batch boundary:
    the reconciler counts it by its live lease, and sends no second slot beside it."""
    workers.node_beat(node, info=INFO, cpus=[])
    job = make_job(alice, chunks=3, parallelism=1)
    start(job)
    orphan = workers.process_id(node=node, pid=os.getppid())
    claimed = claim_one(job, process=orphan)
    broker = redis_clients.broker()
    queue = dispatch.kind_queue("burn")
    try:
        assert dispatch.jobs_top_up([job.pk]) == 0
        assert slot_registry.slots_of(job.pk) == []
        # Its chunk recorded (the slot stopped): now the job gets its one slot.
        Chunk.objects.filter(pk=claimed.id).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert dispatch.jobs_top_up([job.pk]) == 1
        assert dispatch.jobs_top_up([job.pk]) == 0
    finally:
        broker.delete(slot_registry.registry_key(job.pk), queue)
        broker.srem(slot_registry.REGISTERED_JOBS, job.pk)


@pytest.mark.django_db
def test_the_registries_of_ended_jobs_are_swept(alice: User, node: str) -> None:
    ended = make_job(alice, chunks=2, parallelism=1)
    active = make_job(alice, chunks=2, parallelism=1)
    dead = workers.process_id(node=node, pid=os.getppid())
    for job in (ended, active):
        _register(job.pk, "t1", slot_registry.running_state(node, dead))
        _register(job.pk, "t2", "q|1.0")
        redis_clients.broker().sadd(slot_registry.REGISTERED_JOBS, job.pk)
    services.job_cancel(job=ended)
    try:
        assert slot_registry.registries_sweep(active=[active.pk]) == 2
        assert slot_registry.slots_of(ended.pk) == []
        assert len(slot_registry.slots_of(active.pk)) == 2
        registered = redis_clients.broker().smembers(slot_registry.REGISTERED_JOBS)
        assert str(ended.pk) not in registered
        # One that the caller thought ended but that is active again keeps its slots.
        assert slot_registry.registries_sweep(active=[]) == 0
        assert len(slot_registry.slots_of(active.pk)) == 2
    finally:
        redis_clients.broker().delete(slot_registry.registry_key(active.pk))
        redis_clients.broker().srem(slot_registry.REGISTERED_JOBS, active.pk, ended.pk)
    assert Job.objects.get(pk=ended.pk).status == Job.Status.CANCELLED


# --- the sequence number ------------------------------------------------------------------------


def _next_seq(job_id: int) -> int:
    async def next_one() -> int:
        client = events.redis_client()
        try:
            return await events.next_seq(client, job_id)
        finally:
            await client.aclose()

    return async_to_sync(next_one)()


def test_the_sequence_number_never_goes_back_when_redis_loses_it() -> None:
    job_id = JOB_ID + 1
    key = events.seq_key(job_id)
    client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
    client.delete(key)
    try:
        before = time.time()
        first = async_to_sync(events.current_seq)(job_id)
        # Based on the Redis server's clock, in microseconds (exact in JavaScript).
        assert abs(first / 1e6 - before) < 5
        assert first < 2**53
        assert _next_seq(job_id) == first + 1
        assert _next_seq(job_id) == first + 2
        assert client.ttl(key) > 0
        client.delete(key)  # what FLUSHALL does to it
        again = _next_seq(job_id)
        assert again > first + 2
        assert async_to_sync(events.current_seq)(job_id) == again
    finally:
        client.delete(key)
