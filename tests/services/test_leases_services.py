"""Leases live per running chunk, not per process; a slot outlives a database that stops
answering; no worker holds a job's lock while it is silent (jobs.engine.chunks, slots)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, ProgrammingError, connection
from django.utils import timezone

from jobs import kinds
from jobs.engine import bookkeeping, chunks, job_state, slots
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from tests.factories import TEST_PROCESS, claim, done, make_job, start
from tests.waiting import poll_until

pytestmark = pytest.mark.services

SLOT_PROCESS = "test@host|2|boot"


@pytest.fixture(autouse=True)
def _keepalive_holds_nothing_after(settings: Any) -> Iterator[None]:
    """The keepalive is the process's: what a test made it hold must not outlive it (nor
    the process sampler's thread write after the test's database is gone)."""
    settings.COREBOARD_CHUNK_CAPTURE = False
    yield
    keepalive = slots._keepalive_here()
    keepalive.let_go(keepalive.held())


@pytest.fixture(autouse=True)
def _probe_kind() -> Iterator[None]:
    """The jobs here are of a kind no worker process has: the slots the tests run in this
    process are the only ones (the suite's shared worker, alive once an integration test
    started it, would otherwise take their committed jobs)."""
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        yield


def _job(owner: User, **params: Any) -> Job:
    """A probe job (`ms` per chunk, 1 unless given)."""
    from tests import kinds_probe  # imported by _probe_kind already

    return make_job(owner, kinds_probe.NAME, **{"ms": 1, **params})


def _slot(job: Job) -> slots._SlotRun:
    return slots._SlotRun(
        job_id=job.pk, process=SLOT_PROCESS, node="test@host", hooks=slots.SlotHooks()
    )


def _expire(*chunk_ids: int) -> None:
    Chunk.objects.filter(pk__in=chunk_ids).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def _expired(chunk_id: int) -> bool:
    expires = Chunk.objects.values_list("lease_expires_at", flat=True).get(pk=chunk_id)
    return expires is not None and expires < timezone.now()


@pytest.mark.django_db
def test_only_the_chunks_named_are_renewed(alice: User) -> None:
    job = _job(alice, chunks=2)
    start(job)
    held, left = claim(job, limit=2)
    _expire(held.id, left.id)
    assert chunks.leases_renew(process=TEST_PROCESS, chunk_ids=[held.id, left.id + 100]) == 1
    assert not _expired(held.id)
    assert _expired(left.id)
    assert chunks.leases_reap() == [job.pk]
    assert Chunk.objects.get(pk=left.id).status == Chunk.Status.PENDING
    assert chunks.leases_renew(process=TEST_PROCESS, chunk_ids=[]) == 0


def _failing_once(
    real: Callable[..., Any], error: BaseException, *, after: bool
) -> Callable[..., Any]:
    """`real`, whose first call fails with `error`: before it did anything, or `after` it
    committed (the answer lost on the way back)."""
    calls = 0

    def call(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            if after:
                real(**kwargs)
            raise error
        return real(**kwargs)

    return call


@pytest.mark.django_db(transaction=True)
def test_a_slot_ended_by_an_error_hands_its_chunks_back_and_renews_none(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(alice, chunks=6, ms=1)
    start(job)
    slot = _slot(job)
    # Not a connection error: the slot does not try again, it ends.
    monkeypatch.setattr(
        bookkeeping,
        "chunks_record",
        _failing_once(chunks.chunks_record, ProgrammingError("broken"), after=False),
    )
    with pytest.raises(ProgrammingError):
        slot.run()
    assert slot.keepalive.held() == set()
    statuses = set(job.chunks.values_list("status", "attempts"))
    assert statuses == {(Chunk.Status.PENDING, 0)}, "handed back, no run counted as lost"

    # The slot the process runs next (a neighbour's) keeps its own chunks alive only.
    other = _job(alice, chunks=1)
    start(other)
    (neighbour,) = claim(other, process=SLOT_PROCESS)
    slot.keepalive.hold(SLOT_PROCESS, [neighbour.id])
    _expire(neighbour.id)
    slot.keepalive.beat()
    assert not _expired(neighbour.id)


@pytest.mark.django_db(transaction=True)
def test_a_slot_ended_by_a_system_exit_hands_its_chunks_back_as_a_lost_run(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(alice, chunks=2, ms=1)
    start(job)
    # As a kind that calls sys.exit() (or a cold shutdown) would end it: the chunk must not
    # come back for ever without counting.
    monkeypatch.setattr(
        bookkeeping,
        "chunks_record",
        _failing_once(chunks.chunks_record, SystemExit(1), after=False),
    )
    with pytest.raises(SystemExit):
        _slot(job).run()
    statuses = sorted(job.chunks.values_list("status", "attempts"))
    assert statuses == [(Chunk.Status.PENDING, 0), (Chunk.Status.PENDING, 1)]


@pytest.mark.django_db(transaction=True)
def test_chunks_a_slot_could_not_hand_back_expire_whatever_the_process_runs_next(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(alice, chunks=6, ms=1)
    start(job)
    slot = _slot(job)
    monkeypatch.setattr(
        bookkeeping,
        "chunks_record",
        _failing_once(chunks.chunks_record, ProgrammingError("broken"), after=False),
    )

    def unreachable(**kwargs: Any) -> list[int]:
        raise OperationalError("the database went away")

    monkeypatch.setattr(bookkeeping, "leases_release", unreachable)
    with pytest.raises(ProgrammingError):
        slot.run()
    left = list(job.chunks.filter(status=Chunk.Status.RUNNING).values_list("id", flat=True))
    assert left, "the slot's batch is still leased"
    _expire(*left)
    slot.keepalive.hold(SLOT_PROCESS, [])  # the process runs another slot meanwhile
    slot.keepalive.beat()
    assert all(_expired(chunk_id) for chunk_id in left)
    assert chunks.leases_reap() == [job.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("committed", [False, True], ids=["lost", "answer-lost"])
def test_a_slot_records_again_once_the_database_answers(
    alice: User, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    job = _job(alice, chunks=40, ms=1, parallelism=1)
    start(job)
    monkeypatch.setattr(
        bookkeeping,
        "chunks_record",
        _failing_once(
            chunks.chunks_record, OperationalError("server closed the connection"), after=committed
        ),
    )
    assert _slot(job).run() == "over"
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done_chunks == 40
    assert job.result is not None
    assert job.result["chunks"] == 40
    assert set(job.chunks.values_list("status", flat=True)) == {Chunk.Status.DONE}
    # A claim made by the commit whose answer was lost was handed back, its attempt too.
    assert set(job.chunks.values_list("attempts", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
def test_combine_runs_without_the_job_lock(
    alice: User, monkeypatch: pytest.MonkeyPatch, other_session: psycopg.Connection
) -> None:
    job = _job(alice, chunks=3, ms=1, parallelism=1)
    start(job)
    locked_elsewhere: list[bool] = []
    real_combine = job_state.job_combine

    def combine(combined: Job) -> None:
        # Another machine can take the job's lock while this one combines.
        with other_session.transaction():
            other_session.execute("SET LOCAL lock_timeout = '100ms'")
            other_session.execute("SELECT 1 FROM jobs_job WHERE id = %s FOR UPDATE", [job.pk])
            locked_elsewhere.append(True)
        real_combine(combined)

    monkeypatch.setattr(chunks, "job_combine", combine)
    assert _slot(job).run() == "over"
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert locked_elsewhere == [True]


@pytest.mark.django_db(transaction=True)
def test_a_silent_lock_holder_is_the_reason_and_is_ended_within_the_hold_limit(
    alice: User, other_session: psycopg.Connection
) -> None:
    job = _job(alice, chunks=2)
    start(job)
    other_session.execute("BEGIN")
    # Exactly what a worker sends as it locks a job, then it goes quiet (frozen).
    other_session.execute(
        chunks._JOB_LOCK_SQL.replace("*,", "id,"),
        [str(chunks.LOCK_HOLD_MAX_MS), f"{chunks.LOCK_HOLDER_PREFIX}{job.pk}", job.pk],
    )
    quiet_at = time.monotonic()

    def reason() -> str:
        waiting = selectors.job_live(job)["waiting"]
        return waiting["reason"] + ": " + waiting["text"] if waiting else ""

    # The first reason; the test runs no worker, so that one follows.
    said: str = poll_until(
        lambda: reason() if reason().startswith("lock_holder_silent") else None, every=0.05
    )
    assert "A worker process holding this job's lock is not answering" in said
    assert "no live worker has the kind" in said

    # Asked from here: a statement on the quiet session would make it speak again.
    backend = other_session.info.backend_pid

    def ended() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend])
            return cursor.fetchone() is None

    poll_until(ended, timeout=5, every=0.05)
    assert time.monotonic() - quiet_at < chunks.LOCK_HOLD_MAX_MS / 1000 + 0.5
    assert reason().startswith("no_worker_with_kind")
    other_session.close()  # its server side is gone already


@pytest.mark.django_db
def test_a_chunk_counted_while_an_early_exit_combines_gets_it_combined_again(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(alice, "hash_search", prefix="x", difficulty=2, chunks=4)
    start(job)
    first = claim(job)[0]
    (second,) = claim(job, process="other|2|boot")
    combined_with: list[int] = []
    real_combine = job_state.job_combine

    def combine(unlocked: Job) -> None:
        combined_with.append(unlocked.done_chunks)
        if len(combined_with) == 1:
            # The other process records its chunk while this one combines, unlocked.
            chunks.chunks_record(job_id=job.pk, outcomes=[done(first, {"nonce": None})])
        real_combine(unlocked)

    monkeypatch.setattr(chunks, "job_combine", combine)
    chunks.chunks_record(job_id=job.pk, outcomes=[done(second, {"nonce": 7, "hash": "00ab"})])
    job.refresh_from_db()
    assert combined_with == [1, 2], "the first result is dropped, combined again"
    assert job.status == Job.Status.SUCCEEDED
    assert job.done_chunks == 2
    assert job.result == {"nonce": 7, "hash": "00ab"}
    statuses = dict(job.chunks.values_list("index", "status"))
    assert statuses == {0: "done", 1: "done", 2: "cancelled", 3: "cancelled"}


def test_the_keepalive_beats_on_after_a_beat_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A beat that raises (PostgreSQL down while the thread checks its connection) must
    not end the thread: every lease of the process would expire with it."""
    from jobs.engine import workers

    beats = threading.Semaphore(0)

    class Failing(slots._Keepalive):
        calls = 0

        def beat(self) -> None:
            Failing.calls += 1
            if Failing.calls == 1:
                raise OperationalError("the database is down")
            beats.release()

    monkeypatch.setattr(workers, "HEARTBEAT_S", 0.01)
    Failing()
    assert beats.acquire(timeout=10)
    assert Failing.calls >= 2
