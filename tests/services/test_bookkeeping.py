"""A slot's bookkeeping runs beside its chunks (jobs.engine.bookkeeping): the next chunk is
claimed before the running one ends, outcomes are told live as chunks end and recorded
after, a cancel reaches the running chunk as a flag, and claims shrink near the job's end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from jobs import kinds, protocol, services
from jobs.engine import bookkeeping, events, slots
from jobs.models import Chunk, Job
from tests.factories import claim, make_job, start
from tests.waiting import poll_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SLOT_PROCESS = "test@host|3|boot"


@pytest.fixture(autouse=True)
def _probe_kind(settings: Any) -> Iterator[None]:
    """Probe jobs: a kind no worker process has, so the slots run here are the only ones."""
    settings.COREBOARD_CHUNK_CAPTURE = False
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        yield
    keepalive = slots._keepalive_here()
    keepalive.let_go(keepalive.held())


def _job(owner: User, **params: Any) -> Job:
    from tests import kinds_probe

    job = make_job(owner, kinds_probe.NAME, **params)
    start(job)
    return job


def _slot(job: Job) -> slots._SlotRun:
    return slots._SlotRun(
        job_id=job.pk, process=SLOT_PROCESS, node="test@host", hooks=slots.SlotHooks()
    )


def test_a_claim_takes_at_most_a_share_of_what_is_left(alice: User) -> None:
    job = _job(alice, chunks=10, ms=0)
    first = claim(job, process=SLOT_PROCESS, limit=100)
    assert len(first) == 10, "without a share, the limit alone"
    job = _job(alice, chunks=10, ms=0)
    from jobs.engine.chunks import Claimer, chunks_claim

    claimer = Claimer(process=SLOT_PROCESS, worker="test@host", pid=3)
    # Two slots share it (share = 2 × 2): a quarter of the 10 left, rounded up.
    assert len(chunks_claim(job_id=job.pk, claimer=claimer, limit=100, share=4)) == 3
    assert len(chunks_claim(job_id=job.pk, claimer=claimer, limit=1, share=4)) == 1
    # Never nothing while chunks are left to claim.
    Job.objects.filter(pk=job.pk).update(done_chunks=9)
    assert len(chunks_claim(job_id=job.pk, claimer=claimer, limit=100, share=4)) == 1


def test_the_next_chunk_is_claimed_while_the_running_one_computes(alice: User) -> None:
    job = _job(alice, chunks=6, ms=60, parallelism=1)
    assert _slot(job).run() == "over"
    done = list(job.chunks.order_by("index").values("queued_at", "started_at", "finished_at"))
    assert all(chunk["finished_at"] for chunk in done)
    # From the third chunk on (once the chunks' pace is known), each was claimed before
    # the one before it ended; a slow thread on a busy machine may be late now and then.
    ahead = [
        later["queued_at"] is not None
        and earlier["finished_at"] is not None
        and later["queued_at"] < earlier["finished_at"]
        for earlier, later in pairwise(done[1:])
    ]
    assert sum(ahead) >= 2, ahead


def test_chunks_are_told_live_as_they_end_and_recorded_after(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        events, "chunks_changed", lambda job_id, deltas: told.extend(("chunk", d) for d in deltas)
    )
    monkeypatch.setattr(
        events,
        "job_changed",
        lambda job, chunk_states, deltas=(): told.append(("job", (job, chunk_states, deltas))),
    )
    job = _job(alice, chunks=3, ms=30, parallelism=1)
    assert _slot(job).run() == "over"
    finished = [d for kind, d in told if kind == "chunk" and d["status"] == "done"]
    assert sorted(d["index"] for d in finished) == [0, 1, 2]
    stored = {c.index: c for c in job.chunks.all()}
    for delta in finished:
        chunk = stored[delta["index"]]
        assert delta["finished_at"] == protocol.iso(chunk.finished_at)
        assert delta["attempts"] == chunk.attempts == 1
        assert delta["cpu_seconds"] == protocol.rounded(chunk.cpu_seconds)
    assert all(delta["recorded"] is False for delta in finished)
    # The records publish the job's counts and say the chunks are stored, no more.
    recorded = [payload for kind, payload in told if kind == "job"]
    assert recorded[-1][0]["status"] == Job.Status.SUCCEEDED
    assert all(chunk["status"] != "done" for _, states, _ in recorded for chunk in states)
    notes = [delta for _, _, deltas in recorded for delta in deltas]
    assert sorted(delta["index"] for delta in notes) == [0, 1, 2]
    assert all(set(delta) == {"index", "status", "recorded"} for delta in notes)
    # Each chunk was told done before a record counted it.
    first_done = min(
        i for i, (kind, d) in enumerate(told) if kind == "chunk" and d["status"] == "done"
    )
    counts = [i for i, (kind, p) in enumerate(told) if kind == "job" and p[0]["done_chunks"]]
    assert counts
    assert first_done < counts[0]


def test_a_cancel_stops_the_running_chunk_and_hands_back_those_claimed(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_CANCEL_POLL_MS = 50
    job = _job(alice, chunks=40, ms=20, parallelism=1)
    slot = _slot(job)
    ended: list[str] = []

    def run() -> None:
        try:
            ended.append(slot.run())
        finally:
            connection.close()  # this thread's, before the test database goes

    thread = threading.Thread(target=run)
    thread.start()
    try:
        poll_until(lambda: job.chunks.filter(status=Chunk.Status.DONE).count() >= 5, every=0.02)
        services.job_cancel(job=job)
    finally:
        thread.join(30)
    assert ended == ["over"]
    statuses = set(job.chunks.values_list("status", flat=True))
    assert statuses <= {Chunk.Status.DONE, Chunk.Status.CANCELLED}, statuses
    assert slot.keepalive.held() == set()
    assert job.chunks.filter(status=Chunk.Status.CANCELLED).exists(), "claimed, then handed back"


def test_a_slot_refuses_to_run_inside_a_transaction(alice: User) -> None:
    from django.db import transaction

    job = _job(alice, chunks=1, ms=0)
    with transaction.atomic(), pytest.raises(bookkeeping.Refused):
        _slot(job).run()
    assert set(job.chunks.values_list("status", "attempts")) == {(Chunk.Status.PENDING, 0)}
