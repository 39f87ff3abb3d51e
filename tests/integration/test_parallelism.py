"""Parallelism is an invariant, with real processes: duplicate slot messages and a broker
that loses its data (FLUSHALL) never put more of a job's chunks in flight than its
parallelism, sampled from PostgreSQL every 100 ms for the whole job, and a viewer ends on
the job's real final state."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import current_app
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from jobs import protocol, services
from jobs.engine import dispatch, redis_clients, slot_registry, workers
from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.sockets import follow_job
from tests.waiting import poll_until, wait_for_chunk_running_on

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

FINAL = {"succeeded", "failed", "cancelled"}
SAMPLE_EVERY_S = 0.1


@dataclass
class Sample:
    at: float
    chunks: int  # running under a live lease
    processes: int  # distinct holders of those leases


@dataclass
class InFlight:
    """A thread sampling a job's chunks in flight every SAMPLE_EVERY_S until stopped."""

    job_id: int
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                counts = Chunk.objects.filter(
                    job_id=self.job_id,
                    status=Chunk.Status.RUNNING,
                    lease_expires_at__gt=timezone.now(),
                ).aggregate(chunks=Count("id"), processes=Count("lease_owner", distinct=True))
                self.samples.append(Sample(time.monotonic(), **counts))
                self.stop.wait(SAMPLE_EVERY_S)
        finally:
            connection.close()

    @property
    def most(self) -> int:
        """The most processes that ran the job's chunks at once: the parallelism bounds
        these. (A slot claims its next chunk shortly before the running one ends, so a
        process may hold one chunk more than it runs: `chunks` may briefly exceed it.)"""
        return max(sample.processes for sample in self.samples)


def sample_in_flight(job_id: int) -> tuple[InFlight, threading.Thread]:
    sampler = InFlight(job_id)
    thread = threading.Thread(target=sampler.run, name="in-flight-sampler")
    thread.start()
    return sampler, thread


def running_slot(job_id: int) -> slot_registry.SlotState | None:
    """The job's running slot, once one runs a chunk."""
    running = [state for state in slot_registry.slots_of(job_id) if state.phase == "r"]
    busy = Chunk.objects.filter(job_id=job_id, status=Chunk.Status.RUNNING).exists()
    return running[0] if running and busy else None


def live_slots(job_id: int) -> list[slot_registry.SlotState]:
    live_nodes = set(workers.live_workers())
    return [
        state
        for state in slot_registry.slots_of(job_id)
        if state.is_live(now=time.time(), live_nodes=live_nodes)
    ]


def assert_counted_once(job: Job, chunks: int) -> None:
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done_chunks == chunks
    assert job.chunks.filter(status="done").count() == chunks


def page_counts(
    messages: list[tuple[float, dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, int]]:
    """The job and its chunks' statuses as the job page holds them after these messages
    (static/jobs/job_state.mjs: a snapshot's packed grid gives every status and its window
    the full states, pages add to the window, deltas merge; a final status is not undone by
    a late report of the same attempt)."""
    job: dict[str, Any] = {}
    chunks: dict[int, dict[str, Any]] = {}
    snapshot_seq = None
    for _, message in messages:
        kind = message["type"]
        if kind == "job.snapshot":
            job, snapshot_seq = message["job"], message["seq"]
            chunks = {
                index: {
                    "index": index,
                    "status": status,
                    "attempts": 2 if retried else int(status != "pending"),
                }
                for index, (status, retried) in enumerate(protocol.grid_unpack(message["grid"]))
            }
            chunks.update({chunk["index"]: chunk for chunk in message["chunks"]})
        elif kind == "job.chunks" and message["seq"] == snapshot_seq:
            for chunk in message["chunks"]:
                chunks[chunk["index"]] = chunk | chunks.get(chunk["index"], {})
        elif kind == "job.progress":
            if message["job"] and message["job"]["version"] >= job["version"]:
                job = message["job"]
            for delta in message["chunks"]:
                known = chunks.get(delta["index"], {"index": delta["index"]})
                newer = delta.get("attempts", 0) > known.get("attempts", 0)
                final = {"done", "failed", "cancelled"}
                undone = known.get("status") in final and delta.get("status") not in final
                if undone and not newer:
                    continue
                chunks[delta["index"]] = known | delta
    statuses: dict[str, int] = {}
    for chunk in chunks.values():
        statuses[chunk["status"]] = statuses.get(chunk["status"], 0) + 1
    return job, statuses


def test_duplicate_slot_messages_never_exceed_the_parallelism(
    alice: User, celery_worker: ServerProcess
) -> None:
    """Two worker processes, a parallelism-1 job: the running slot's own message sent
    again (twice), a token nobody registered, and a registered token beyond the
    parallelism (as two dispatchers that raced would leave) all run nothing."""
    job = make_job(alice, parallelism=1, committed=True, chunks=14, ms=400)
    sampler, thread = sample_in_flight(job.pk)
    try:
        running = poll_until(lambda: running_slot(job.pk), timeout=30, every=0.05)
        queue = dispatch.kind_queue("burn")
        for _ in range(2):
            current_app.send_task(
                slot_registry.SLOT_TASK, args=[job.pk, running.token], queue=queue
            )
        current_app.send_task(slot_registry.SLOT_TASK, args=[job.pk, uuid.uuid4().hex], queue=queue)
        slot_registry.slot_send(job.pk, uuid.uuid4().hex, queue, dispatch.NORMAL_BROKER_PRIORITY)
        job = poll_until(
            lambda: Job.objects.filter(pk=job.pk, status__in=FINAL).first(), timeout=90
        )
    finally:
        sampler.stop.set()
        thread.join(5)
    print(f"\nduplicates: {len(sampler.samples)} samples, max in flight {sampler.most}")
    assert sampler.most == 1
    assert_counted_once(job, 14)
    assert set(job.chunks.values_list("attempts", flat=True)) == {1}
    # The extra messages reached the idle process while the job ran, and did nothing.
    output = celery_worker.output()
    assert "'running-elsewhere'" in output or "'stale'" in output
    assert "'surplus'" in output
    # Its slot ends (and unregisters) just after recording the job's end.
    poll_until(lambda: not live_slots(job.pk), timeout=10)


def test_a_flushall_mid_job_never_exceeds_the_parallelism_and_a_viewer_ends_right(
    alice: User, celery_worker: ServerProcess
) -> None:
    """The running slot loses its entry with the broker's data: it finishes its chunk and
    stops, and the reconciler, counting it by its lease, sends its replacement only then.
    The job's seq is re-based above what the viewer saw, so the viewer resyncs."""
    job = make_job(alice, parallelism=1, committed=True, chunks=20, ms=400)
    sampler, thread = sample_in_flight(job.pk)
    flushed: list[float] = []
    flushed_at: list[float] = []
    settled: list[float] = []

    def flush_mid_job() -> None:
        try:
            poll_until(lambda: Job.objects.get(pk=job.pk).done_chunks >= 3, every=0.05)
            redis_clients.broker().flushall()
            flushed.append(time.monotonic())
            flushed_at.append(time.time())
            # Settled: the job has one live slot again, and it runs a chunk.
            poll_until(lambda: len(live_slots(job.pk)) == 1 and running_slot(job.pk), every=0.05)
            settled.append(time.monotonic())
        finally:
            connection.close()

    flusher = threading.Thread(target=flush_mid_job)
    flusher.start()
    try:
        messages = follow_job(job.pk, alice, until=FINAL)
    finally:
        flusher.join(90)
        sampler.stop.set()
        thread.join(5)
    job.refresh_from_db()
    assert flushed
    print(
        f"\nflushall: {len(sampler.samples)} samples, max in flight {sampler.most}, "
        f"settled {settled[0] - flushed[0] if settled else None} s after the flush"
    )
    assert sampler.most == 1
    assert settled
    assert_counted_once(job, 20)
    # The viewer resynced after the flush, and ends on the real final state.
    resyncs = [
        at - flushed_at[0]
        for at, message in messages
        if message["type"] == "job.snapshot" and at > flushed_at[0]
    ]
    print(f"viewer resynced {resyncs[0] if resyncs else None} s after the flush")
    assert resyncs
    final_job, statuses = page_counts(messages)
    assert final_job["status"] == "succeeded"
    assert final_job["done_chunks"] == 20
    assert statuses == {"done": 20}


def test_cancel_then_kill_leaves_no_slot_registered(
    alice: User, child_env: dict[str, str], celery_worker: ServerProcess
) -> None:
    """Slots killed with their worker after a cancel never end themselves: the reconciler
    (of the worker that lives on) removes the ended job's registry."""
    victim = start_celery_worker(child_env, concurrency=2)
    victim_pids = {child.pid for child in victim.children()}
    job = make_job(alice, chunks=8, ms=30_000, parallelism=4, committed=True)
    wait_for_chunk_running_on(job.pk, victim_pids)
    assert slot_registry.slots_of(job.pk)
    assert services.job_cancel(job=job)
    victim.kill_all()
    killed = time.monotonic()
    poll_until(
        lambda: (
            not (
                slot_registry.slots_of(job.pk)
                or redis_clients.broker().sismember(slot_registry.REGISTERED_JOBS, str(job.pk))
            )
        ),
        timeout=30,
        every=0.05,
    )
    took = time.monotonic() - killed
    print(f"\nregistry of the cancelled job removed {took:.2f} s after the kill")
