"""Job priorities: validation and permission, the slot messages' broker priority, a running
slot giving way to a higher one, and aging (issue 23, item 3)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, cast, get_args

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from kombu.transport.redis import Channel as RedisChannel

from jobs import protocol, services
from jobs.engine import dispatch, redis_clients, slot_registry, workers
from jobs.models import Job
from jobs.options import PRIORITY_NAMES
from tests.factories import make_job

pytestmark = [pytest.mark.services]

HIGH = dispatch.broker_priority(Job.Priority.HIGH)
NORMAL = dispatch.broker_priority(Job.Priority.NORMAL)
LOW = dispatch.broker_priority(Job.Priority.LOW)
URGENT = dispatch.broker_priority(Job.Priority.URGENT)


@pytest.fixture
def queue(settings: Any) -> Iterator[str]:
    """A queue of its own for the burn kind, so no worker takes the test's messages."""
    name = f"test-priority-{uuid.uuid4().hex[:8]}"
    settings.COREBOARD_KIND_QUEUES = {"burn": name}
    yield name
    redis_clients.broker().delete(*slot_registry.priority_lists([name], dispatch.PRIORITY_STEPS))


@pytest.fixture(autouse=True)
def _registries_removed() -> Iterator[None]:
    """The slot registries a test's jobs got go with them (other tests sweep registries)."""
    yield
    broker = redis_clients.broker()
    for job_id in broker.smembers(slot_registry.REGISTERED_JOBS):
        if not Job.objects.filter(pk=int(job_id)).exists():
            continue
        broker.delete(slot_registry.registry_key(int(job_id)))
        broker.srem(slot_registry.REGISTERED_JOBS, job_id)


@pytest.fixture
def node() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:6]}@host"
    yield name
    workers.node_remove(name)


def _waiting(queue: str, step: int) -> int:
    return int(redis_clients.broker().llen(slot_registry.priority_lists([queue], [step])[0]))


def test_the_broker_priorities_are_the_transports_steps() -> None:
    steps = cast(list[int], settings.CELERY_BROKER_TRANSPORT_OPTIONS["priority_steps"])
    assert list(dispatch.PRIORITY_STEPS) == steps
    # Each priority has a step of its own, the more urgent the lower (kombu: 0 first).
    ordered = sorted(Job.Priority, reverse=True)
    assert [dispatch.broker_priority(p) for p in ordered] == steps
    # The lists the yield check reads are the ones kombu's Redis transport writes.
    channel: Any = RedisChannel.__new__(RedisChannel)
    channel.priority_steps = steps
    assert slot_registry.priority_lists(["q"], steps) == [
        channel._q_for_pri("q", step) for step in steps
    ]
    # The names people write are the message's names.
    assert get_args(protocol.PriorityName) == tuple(PRIORITY_NAMES)


def _asked(person: User, priority: object) -> Job:
    """A job `person` asks for (as the pages and the API do: `by` the person)."""
    return services.job_create(
        owner=person, kind="burn", params={"chunks": 2, "ms": 1}, priority=priority, by=person
    )


def _allow_urgent(person: User) -> User:
    person.user_permissions.add(Permission.objects.get(codename="submit_urgent"))
    return User.objects.get(pk=person.pk)  # (the permission cache)


@pytest.mark.django_db
def test_priority_is_validated_by_name_and_urgent_needs_the_permission(alice: User) -> None:
    assert _asked(alice, "high").priority == Job.Priority.HIGH
    assert _asked(alice, None).priority == Job.Priority.NORMAL
    for bad, words in [("highest", "Must be one of low, normal, high, urgent"), (3, "JSON string")]:
        before = Job.objects.count()
        with pytest.raises(services.Rejected) as refused:
            _asked(alice, bad)
        assert words in refused.value.errors["priority"][0]
        assert Job.objects.count() == before
    with pytest.raises(services.Rejected) as refused:
        _asked(alice, "urgent")
    assert "Can submit urgent jobs" in refused.value.errors["priority"][0]
    # The preview refuses it the same way.
    with pytest.raises(services.Rejected) as refused:
        services.job_plan(owner=alice, kind="burn", params={}, priority="urgent")
    assert "priority" in refused.value.errors
    assert _asked(_allow_urgent(alice), "urgent").priority == Job.Priority.URGENT


@pytest.mark.django_db
def test_work_coreboard_starts_itself_is_not_asked_for_the_permission(bob: User) -> None:
    """A study's runs or a schedule (by=None) may run in a worker, which cannot read auth's
    tables: the priority was checked when a person set that work up."""
    assert make_job(bob, priority="urgent").priority == Job.Priority.URGENT


@pytest.mark.django_db
def test_a_rerun_keeps_the_priority_and_asks_for_the_permission_again(alice: User) -> None:
    alice = _allow_urgent(alice)
    urgent = _asked(alice, "urgent")
    rerun = services.job_rerun(job=urgent, owner=alice, by=alice)
    assert rerun.priority == Job.Priority.URGENT
    low = _asked(alice, "low")
    assert services.job_rerun(job=low, owner=alice, by=alice).priority == Job.Priority.LOW
    alice.user_permissions.clear()
    alice = User.objects.get(pk=alice.pk)
    before = Job.objects.count()
    with pytest.raises(services.Rejected) as refused:
        services.job_rerun(job=urgent, owner=alice, by=alice)
    assert "priority" in refused.value.errors
    assert Job.objects.count() == before


@pytest.mark.django_db
def test_slots_are_sent_with_their_jobs_priority_higher_first(
    alice: User, queue: str, settings: Any
) -> None:
    settings.COREBOARD_OWNER_MAX_SLOTS = 1
    low = make_job(alice, priority="low", parallelism=1)
    high = make_job(alice, priority="high", parallelism=1)
    assert dispatch.jobs_top_up([low.pk, high.pk]) == 0  # no live worker has the kind
    workers.node_beat(
        "test-prio@host",
        info=workers.node_info(concurrency=1, queues=[queue], node_kinds=["burn"]),
        cpus=[],
    )
    try:
        assert dispatch.jobs_top_up([low.pk, high.pk]) == 1
    finally:
        workers.node_remove("test-prio@host")
    # One slot for Alice: the higher priority's went first, to its own list.
    assert _waiting(queue, HIGH) == 1
    assert _waiting(queue, LOW) == 0
    (state,) = slot_registry.slots_of(high.pk)
    assert state.queued_step == HIGH


def test_a_running_slot_is_outranked_only_by_a_higher_priority(node: str, queue: str) -> None:
    job_id, token = 987_654_322, uuid.uuid4().hex
    me = workers.process_id(node=node)
    broker = redis_clients.broker()
    broker.hset(slot_registry.registry_key(job_id), token, "q|1.0|6")
    try:
        assert slot_registry.slot_begin(job_id, token, node, me) == slot_registry.BEGUN
        above = slot_registry.priority_lists([queue], [URGENT, HIGH])
        at_or_above = slot_registry.priority_lists([queue], [URGENT, HIGH, NORMAL])

        def outranked() -> bool:
            permit = slot_registry.slot_claim_permit(job_id, token, node, me, above=above)
            workers.claim_done(node, me)
            assert permit.owned
            return permit.outranked

        assert not outranked()
        assert not slot_registry.slot_should_yield(node, at_or_above)
        # A lower priority waits: neither gives way (it would come after this slot anyway).
        broker.lpush(slot_registry.priority_lists([queue], [LOW])[0], "x")
        assert not outranked()
        assert not slot_registry.slot_should_yield(node, at_or_above)
        # Its own priority waits: it gives way at its slice end only (fair share).
        broker.lpush(slot_registry.priority_lists([queue], [NORMAL])[0], "x")
        assert not outranked()
        assert slot_registry.slot_should_yield(node, at_or_above)
        # A higher one: at once, at its next batch boundary.
        broker.lpush(slot_registry.priority_lists([queue], [HIGH])[0], "x")
        assert outranked()
    finally:
        broker.delete(slot_registry.registry_key(job_id))


@pytest.mark.django_db
def test_a_slot_waiting_past_the_aging_period_moves_up_a_step(
    alice: User, queue: str, settings: Any
) -> None:
    settings.COREBOARD_PRIORITY_AGING_S = 5
    job = make_job(alice, priority="low", parallelism=1)
    broker = redis_clients.broker()
    old, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    slot_registry.slot_send(job.pk, old, queue, LOW)
    slot_registry.slot_send(job.pk, fresh, queue, LOW)
    # The first waited 6 s.
    broker.hset(slot_registry.registry_key(job.pk), old, f"q|{time.time() - 6:.3f}|{LOW}")
    assert dispatch.slots_age([job.pk]) == 1
    states = {state.token: state for state in slot_registry.slots_of(job.pk)}
    assert old not in states  # its message, still in the low list, now does nothing
    assert states[fresh].queued_step == LOW
    (raised,) = [state for token, state in states.items() if token != fresh]
    assert raised.queued_step == NORMAL
    assert _waiting(queue, NORMAL) == 1
    assert _waiting(queue, LOW) == 2
    # Up a step per period, to the first step and no further.
    for step in (HIGH, URGENT, URGENT):
        key = slot_registry.registry_key(job.pk)
        for state in slot_registry.slots_of(job.pk):
            broker.hset(key, state.token, f"q|{time.time() - 6:.3f}|{state.queued_step}")
        dispatch.slots_age([job.pk])
        steps = [s.queued_step for s in slot_registry.slots_of(job.pk)]
        assert min(each for each in steps if each is not None) == step
    # 0: no aging.
    settings.COREBOARD_PRIORITY_AGING_S = 0
    assert dispatch.slots_age([job.pk]) == 0
    broker.delete(slot_registry.registry_key(job.pk))
