"""Kinds and capabilities, piece by piece: slots go to workers that have the job's kind, a
job nobody can run waits with a reason, a stuck job says why, and an all-processes job is
measured against the processes it used."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import kinds, protocol, services
from jobs.engine import chunks, dispatch, redis_clients, slot_registry, slots, workers
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from tests.factories import claim, make_job, start

# --- unit: the pieces -------------------------------------------------------------------


@pytest.mark.services
def test_kinds_are_routed_to_their_own_queue_unless_configured(settings: Any) -> None:
    assert dispatch.kind_queue("primes") == "coreboard.kind.primes"
    settings.COREBOARD_KIND_QUEUES = {"mandelbrot": "gpu"}
    assert dispatch.kind_queue("mandelbrot") == "gpu"
    assert dispatch.worker_kind_queues(["mandelbrot", "primes"]) == ["coreboard.kind.primes", "gpu"]


@pytest.mark.services
def test_worker_kinds_are_the_registered_ones_narrowed_by_the_setting(settings: Any) -> None:
    assert workers.worker_kinds() == {kind.name for kind in kinds.all_kinds()}
    settings.COREBOARD_WORKER_KINDS = ["burn", "primes"]
    assert workers.worker_kinds() == {"burn", "primes"}
    settings.COREBOARD_WORKER_KINDS = ["burn", "mandlebrot"]
    with pytest.raises(Exception, match="mandlebrot"):
        workers.worker_kinds()


@pytest.mark.services
def test_slots_wanted_follow_live_capacity() -> None:
    live = {
        "a@h1": workers.LiveWorker(concurrency=2, kinds=frozenset({"burn", "primes"})),
        "b@h2": workers.LiveWorker(concurrency=4, kinds=frozenset({"primes"})),
    }
    assert workers.kind_capacity(live, "primes") == 6
    assert workers.kind_capacity(live, "burn") == 2
    assert workers.kind_capacity(live, "mandelbrot") == 0
    assert dispatch.job_slots_wanted(Job.ALL_PROCESSES, 6) == 6
    assert dispatch.job_slots_wanted(3, 6) == 3
    assert dispatch.job_slots_wanted(8, 2) == 2
    assert dispatch.job_slots_wanted(Job.ALL_PROCESSES, 0) == 0


@pytest.mark.services
@pytest.mark.django_db
def test_parallelism_left_out_means_all_processes_and_zero_is_refused(alice: User) -> None:
    api = APIClient()
    api.force_authenticate(alice)
    body = {"kind": "burn", "params": {"chunks": 1, "ms": 1}}
    created = api.post("/api/jobs/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["parallelism"] == Job.ALL_PROCESSES == 0
    refused = api.post("/api/jobs/", {**body, "parallelism": 0}, format="json")
    assert refused.status_code == 400
    assert "parallelism" in refused.json()


@pytest.mark.services
@pytest.mark.django_db
def test_an_all_processes_job_is_measured_against_the_processes_it_used(alice: User) -> None:
    job = services.job_create(owner=alice, kind="burn", params={"chunks": 3, "ms": 1})
    start(job)
    for owner in ("h1|11|b", "h2|22|b", "h2|22|b"):
        (claimed,) = claim(job, process=owner)
        now = timezone.now()
        chunks.chunks_record(
            job_id=job.pk, outcomes=[chunks.Done(claimed.id, {"iterations": 1}, 1.0, now, now)]
        )
    Job.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - timedelta(seconds=1.5), finished_at=timezone.now()
    )
    job.refresh_from_db()
    state = protocol.job_state(job)
    assert state["parallelism"] == 0
    # 3 CPU seconds in ~1.5 s on 2 processes: speedup ~2, efficiency ~1.
    speedup = state["speedup"]
    assert speedup is not None
    assert state["efficiency"] == pytest.approx(speedup / 2, rel=1e-3)
    assert job.processes_used == 2
    listed = Job.objects.with_timings().get(pk=job.pk)
    assert listed.efficiency == pytest.approx(state["efficiency"], rel=1e-3)


@pytest.mark.services
@pytest.mark.django_db
def test_a_slot_on_a_worker_without_the_kind_claims_nothing(alice: User) -> None:
    job = make_job(alice, chunks=2)
    token = uuid.uuid4().hex
    redis_clients.broker().hset(slot_registry.registry_key(job.pk), token, "q|0")
    ended = slots.slot_run(
        job_id=job.pk, token=token, node="w@h", worker_kinds=frozenset({"primes"})
    )
    assert ended == "lacks-kind"
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING
    assert set(job.chunks.values_list("status", "attempts", "failures")) == {("pending", 0, 0)}
    assert slot_registry.slots_of(job.pk) == []  # given back: the reconciler sends a new one


# --- unit: why a job waits ------------------------------------------------------------------

BURN_WORKER = {"w@nodeB": workers.LiveWorker(concurrency=2, kinds=frozenset({"burn"}))}


def _waiting(job: Job, **registry: Any) -> protocol.WaitingState | None:
    job.refresh_from_db()
    registry.setdefault("workers", BURN_WORKER)
    registry.setdefault("seen", {})
    return selectors.jobs_live([job], **registry)[job.pk]["waiting"]


@pytest.mark.services
@pytest.mark.django_db
def test_a_job_no_live_worker_can_run_waits_for_one(alice: User) -> None:
    job = make_job(alice, chunks=2)
    waiting = _waiting(job, workers={})
    assert waiting is not None
    assert waiting["reason"] == "no_worker_with_kind"
    assert waiting["text"] == "Waiting: no live worker has the kind 'burn'"


@pytest.mark.services
@pytest.mark.django_db
def test_chunks_on_a_lost_node_say_when_they_come_back(alice: User) -> None:
    job = make_job(alice, chunks=3)
    start(job)
    claim(job, process="gone@nodeA|41|boot", limit=2)
    # Not renewed for LOST_AFTER_S (3.5 s) or more: its lease runs out in 6 s.
    Chunk.objects.filter(job=job, status="running").update(
        lease_expires_at=timezone.now() + timedelta(seconds=6)
    )
    seen = {"gone@nodeA": timezone.now().timestamp() - 60, "w@nodeB": timezone.now().timestamp()}
    waiting = _waiting(job, seen=seen)
    assert waiting is not None
    assert waiting["reason"] == "lost_leases"
    assert waiting["text"].startswith("2 chunks on lost node gone@nodeA, back to pending in ")
    seconds = waiting["seconds"]
    assert seconds is not None
    assert 5 <= seconds <= 7
    state = selectors.jobs_live([job], workers=BURN_WORKER, seen=seen)[job.pk]
    assert state["eta_seconds"] is None
    assert state["processes_now"] == 2


@pytest.mark.services
@pytest.mark.django_db
def test_a_fresh_lease_means_progress_not_waiting(alice: User) -> None:
    job = make_job(alice, chunks=3)
    start(job)
    claim(job, process="nodeB|42|boot", limit=1)  # leased for COREBOARD_LEASE_MS from now
    assert _waiting(job) is None


@pytest.mark.services
@pytest.mark.django_db
def test_chunks_in_backoff_say_when_they_retry(alice: User) -> None:
    job = make_job(alice, chunks=1)
    start(job)
    (claimed,) = claim(job)
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Raised(claimed.id, "boom")])
    waiting = _waiting(job)
    assert waiting is not None
    assert waiting["reason"] == "retry_backoff"
    assert waiting["text"] in {"1 chunk waiting to retry in 1 s", "1 chunk waiting to retry now"}


@pytest.mark.services
@pytest.mark.django_db
def test_a_job_without_a_free_process_says_what_it_waits_behind(alice: User, bob: User) -> None:
    waiting_job = make_job(alice, chunks=2)
    waiting = _waiting(waiting_job)
    assert waiting is not None
    assert (waiting["reason"], waiting["text"]) == ("queued", "Waiting for a free worker process")
    busy = make_job(bob, chunks=2)
    start(busy)
    claim(busy, process="nodeB|43|boot")
    waiting = _waiting(waiting_job)
    assert waiting is not None
    assert waiting["text"] == (
        "Waiting for a free worker process: 1 of 2 are busy with 1 job of another person"
    )
    assert waiting["held_by"] == []
    mine = make_job(alice, chunks=2)
    start(mine)
    claim(mine, process="nodeB|44|boot")
    waiting = _waiting(waiting_job)
    assert waiting is not None
    assert waiting["text"] == (
        f"Waiting for a free worker process: all 2 are busy with job #{mine.pk} (yours) "
        "and 1 job of another person"
    )
    assert waiting["held_by"] == [mine.pk]
    # Bob's view of his own waiting job names his job and only counts Alice's.
    bobs_next = make_job(bob, chunks=1)
    waiting = _waiting(bobs_next)
    assert waiting is not None
    assert waiting["text"] == (
        f"Waiting for a free worker process: all 2 are busy with job #{busy.pk} (yours) "
        "and 1 job of another person"
    )
    assert waiting["held_by"] == [busy.pk]
    assert f"#{mine.pk}" not in waiting["text"]
