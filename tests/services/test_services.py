from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from jobs import kinds, services
from jobs.engine import chunks, redis_clients, slot_registry, slots
from jobs.models import Chunk, Job, Upload
from tests.factories import (
    TEST_PROCESS,
    claim,
    claim_one,
    complete,
    complete_next,
    done,
    make_job,
    start,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def test_job_create_stores_chunks_and_dispatches_after_commit(
    alice: User, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job(alice, chunks=5, parallelism=2)
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING
    assert job.total_chunks == 5
    assert set(job.chunks.values_list("status", flat=True)) == {"pending"}
    assert dispatched == [job.pk]


def test_job_create_rejects_bad_input_and_stores_nothing(alice: User) -> None:
    with pytest.raises(services.Rejected) as caught:
        services.job_create(owner=alice, kind="primes", params={"start": 5, "stop": 1, "chunks": 1})
    assert "stop" in caught.value.errors["params"]
    with pytest.raises(services.Rejected) as caught:
        services.job_create(owner=alice, kind="nope", params={})
    assert "Unknown kind 'nope'" in caught.value.errors["kind"][0]
    with pytest.raises(services.Rejected) as caught:
        make_job(alice, parallelism=0)
    assert "between 1 and" in caught.value.errors["parallelism"][0]
    assert not Job.objects.exists()
    assert not Chunk.objects.exists()


def test_the_first_claim_starts_the_job(alice: User) -> None:
    job = make_job(alice, chunks=2)
    assert claim(job) == []  # a pending job hands out nothing until a slot starts it
    before = timezone.now()
    start(job)
    assert job.status == Job.Status.RUNNING
    assert job.started_at is not None
    assert before <= job.started_at <= timezone.now()


def test_claims_take_pending_chunks_in_order_under_a_lease(alice: User, settings: Any) -> None:
    job = make_job(alice, chunks=5)
    start(job)
    first = claim(job, limit=3)
    second = claim(job, process="other|2|boot", limit=3)
    assert [c.index for c in first] == [0, 1, 2]
    assert [c.index for c in second] == [3, 4]
    assert claim(job) == []
    chunk = job.chunks.get(index=3)
    assert chunk.status == Chunk.Status.RUNNING
    assert chunk.lease_owner == "other|2|boot"
    assert chunk.lease_expires_at is not None
    lease = timedelta(milliseconds=settings.COREBOARD_LEASE_MS)
    assert timezone.now() < chunk.lease_expires_at <= timezone.now() + lease
    assert chunk.attempts == 1
    assert (chunk.worker, chunk.pid) == ("other", 2)


def test_a_batch_of_outcomes_is_recorded_at_once(alice: User) -> None:
    job = make_job(alice, chunks=3)
    start(job)
    claimed = claim(job, limit=3)
    recorded = chunks.chunks_record(
        job_id=job.pk, outcomes=[done(c, {"iterations": c.index}, 1.0) for c in claimed]
    )
    assert recorded.counted == 3
    assert recorded.job_active is False
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.done_chunks == 3
    assert job.cpu_seconds == pytest.approx(3.0)
    assert job.result == {"chunks": 3, "iterations": 3}
    assert not job.chunks.exclude(lease_owner="").exists()


def test_duplicate_completion_counts_once(alice: User) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    first = complete_next(job)
    # The same chunk finished again (at-least-once execution) changes nothing.
    recorded = chunks.chunks_record(job_id=job.pk, outcomes=[done(first, {"iterations": 99}, 9)])
    assert recorded.counted == 0
    job.refresh_from_db()
    assert job.done_chunks == 1
    assert job.cpu_seconds == pytest.approx(0.5)
    assert job.chunks.get(index=0).result == {"iterations": 1}


def test_combine_runs_once_when_the_last_chunk_completes(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[Any]] = []
    burn = kinds.get("burn")

    def combine(params: dict[str, Any], partials: list[Any]) -> dict[str, Any]:
        calls.append(partials)
        return {"ok": 1}

    monkeypatch.setattr(burn, "combine", combine)
    job = make_job(alice, chunks=2, parallelism=2)
    start(job)
    claimed = claim(job, limit=2)
    for c in claimed:
        complete(job, c, {"iterations": c.index})
    for c in claimed:
        complete(job, c, {"iterations": 7})
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"ok": 1}
    assert calls == [[{"iterations": 0}, {"iterations": 1}]]
    # Each chunk counted once, the duplicates' 7s and CPU seconds not at all.
    assert job.done_chunks == 2
    assert job.cpu_seconds == pytest.approx(2 * 0.5)
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.started_at <= job.finished_at <= timezone.now()


def test_a_raising_chunk_is_retried_with_backoff_then_fails_the_job(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_CHUNK_MAX_RETRIES = 1
    job = make_job(alice, chunks=3)
    start(job)
    first = claim_one(job)
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Raised(first.id, "RuntimeError: once")])
    chunk = job.chunks.get(index=0)
    assert chunk.status == Chunk.Status.PENDING
    assert chunk.failures == 1
    assert chunk.error == "RuntimeError: once"
    assert chunk.retry_at is not None
    assert chunk.retry_at > timezone.now()
    assert claim_one(job).index == 1  # chunk 0 waits for its backoff
    Chunk.objects.filter(pk=first.id).update(retry_at=timezone.now())
    again = claim_one(job)
    assert (again.index, again.attempts) == (0, 2)
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Raised(again.id, "RuntimeError: twice")])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.failed_chunks == 1
    assert "Chunk 0 failed after 2 attempt(s):\nRuntimeError: twice" in job.error
    assert dict(job.chunks.values_list("index", "status")) == {
        0: "failed",
        1: "running",
        2: "cancelled",
    }


def test_cancel_stops_pending_chunks_and_running_ones_are_cancelled_when_they_stop(
    alice: User,
) -> None:
    job = make_job(alice, chunks=3)
    start(job)
    running = claim_one(job)
    assert services.job_cancel(job=job).status == Job.Status.CANCELLED
    assert claim(job) == []
    recorded = chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Stopped(running.id)])
    assert recorded.job_active is False
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert set(job.chunks.values_list("status", flat=True)) == {"cancelled"}
    with pytest.raises(services.Conflict, match="already ended"):
        services.job_cancel(job=job)


def test_a_running_chunk_stops_at_its_next_progress_call(alice: User, settings: Any) -> None:
    settings.COREBOARD_CANCEL_POLL_MS = 0
    job = make_job(alice, chunks=1)
    start(job)
    claimed = claim_one(job)
    progress = slots.ChunkProgress(job.pk, claimed.index, slots.SlotPace(job.pk))
    progress(1, 10)
    services.job_cancel(job=job)
    with pytest.raises(slots.ChunkCancelled):
        progress(2, 10)


def test_an_expired_lease_returns_the_chunk_to_pending(alice: User) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    lost = claim_one(job, process="gone|9|boot")
    kept = claim_one(job)
    Chunk.objects.filter(pk=lost.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert chunks.leases_reap() == [job.pk]
    assert job.chunks.get(pk=lost.id).status == Chunk.Status.PENDING
    assert job.chunks.get(pk=kept.id).status == Chunk.Status.RUNNING
    again = claim_one(job)
    assert (again.id, again.attempts, again.runs_lost) == (lost.id, 2, 1)
    # The lost process finishing late still counts once; the new run then finds it done.
    complete(job, lost)
    complete(job, again, {"iterations": 5})
    job.refresh_from_db()
    assert job.done_chunks == 1


def test_leases_are_renewed_by_their_owner(alice: User) -> None:
    job = make_job(alice, chunks=1)
    start(job)
    claimed = claim_one(job)
    Chunk.objects.filter(pk=claimed.id).update(lease_expires_at=timezone.now())
    assert chunks.leases_renew(process=TEST_PROCESS, chunk_ids=[claimed.id]) == 1
    assert chunks.leases_renew(process="someone|else|x", chunk_ids=[claimed.id]) == 0
    expires = job.chunks.get().lease_expires_at
    assert expires is not None
    assert expires > timezone.now() + timedelta(seconds=5)
    assert chunks.leases_reap() == []


def test_a_lease_of_a_cancelled_job_ends_cancelled(alice: User) -> None:
    job = make_job(alice, chunks=1)
    start(job)
    claim_one(job)
    services.job_cancel(job=job)
    assert chunks.leases_release(process=TEST_PROCESS) == [job.pk]
    assert job.chunks.get().status == Chunk.Status.CANCELLED


def test_a_chunk_that_keeps_killing_its_worker_is_failed(alice: User, settings: Any) -> None:
    settings.COREBOARD_CHUNK_MAX_ATTEMPTS = 2
    job = make_job(alice, chunks=1)
    start(job)
    for _ in range(2):  # each claim without an outcome stands for a lost process
        claim_one(job)
        chunks.leases_release(process=TEST_PROCESS)
    claimed = claim_one(job)
    assert claimed.runs_lost == 2
    outcome = slots._SlotRun(
        job_id=job.pk, process=TEST_PROCESS, node="test@host", hooks=slots.SlotHooks()
    )._run_one(kinds.get("burn"), claimed)
    assert isinstance(outcome, chunks.Raised)
    assert outcome.final
    chunks.chunks_record(job_id=job.pk, outcomes=[outcome])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "started 2 times without finishing" in job.error


@pytest.mark.django_db(transaction=True)
def test_slot_runs_every_chunk_and_records_cpu_and_worker(alice: User) -> None:
    # A probe job: the suite's shared worker (alive once an integration test started it)
    # lacks the kind, so it cannot take this committed job's chunks.
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        job = services.job_create(owner=alice, kind=kinds_probe.NAME, params={"chunks": 4, "ms": 5})
        broker = redis_clients.broker()
        broker.hset(slot_registry.registry_key(job.pk), "token-1", "q|0")
        assert slots.slot_run(job_id=job.pk, token="token-1", node="test@host") == "over"
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"chunks": 4}
    chunk = job.chunks.get(index=0)
    assert chunk.result == {"index": 0}
    assert chunk.pid == os.getpid()
    assert chunk.worker
    assert chunk.cpu_seconds is not None
    assert not broker.hexists(slot_registry.registry_key(job.pk), "token-1")
    # A message of a slot nobody registered (stale, or a duplicate) does nothing.
    assert slots.slot_run(job_id=job.pk, token="unknown", node="test@host") == "stale"


def test_a_raising_kind_becomes_a_retryable_outcome(alice: User) -> None:
    job = make_job(alice, chunks=1, ms=10, fail_rate=1)
    start(job)
    claimed = claim_one(job)
    outcome = slots._SlotRun(
        job_id=job.pk, process=TEST_PROCESS, node="test@host", hooks=slots.SlotHooks()
    )._run_one(kinds.get("burn"), claimed)
    assert isinstance(outcome, chunks.Raised)
    assert not outcome.final
    assert "InjectedFailure: burn: injected failure in chunk 0" in outcome.error
    assert "Traceback" in outcome.error


def test_every_job_change_bumps_its_version(alice: User) -> None:
    job = make_job(alice, chunks=2, parallelism=1)
    versions = [job.version]
    start(job)
    versions.append(job.version)
    complete_next(job)
    job.refresh_from_db()
    versions.append(job.version)
    services.job_cancel(job=job)
    job.refresh_from_db()
    versions.append(job.version)
    assert versions == sorted(set(versions))


def test_first_find_finishes_the_job_and_cancels_the_rest(alice: User) -> None:
    job = services.job_create(
        owner=alice,
        kind="hash_search",
        params={"prefix": "x", "difficulty": 2, "chunks": 4},
        parallelism=2,
    )
    start(job)
    first = claim_one(job)
    second = claim_one(job, process="other|2|boot")
    complete(job, second, {"nonce": 7, "hash": "00ab"}, 1)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"nonce": 7, "hash": "00ab"}
    statuses = dict(job.chunks.values_list("index", "status"))
    assert statuses == {0: "running", 1: "done", 2: "cancelled", 3: "cancelled"}
    assert claim(job) == []
    # The chunk still running stops at its next progress call and ends cancelled.
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Stopped(first.id)])
    assert job.chunks.get(index=0).status == Chunk.Status.CANCELLED


def text_file(content: bytes, name: str = "book.txt") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/plain")


def test_upload_create_stores_a_utf8_text(alice: User) -> None:
    upload = services.upload_create(owner=alice, file=text_file("déjà vu\n".encode()))
    assert upload.size == len("déjà vu\n".encode())
    assert upload.name == "book.txt"
    with upload.file.open("rb") as handle:
        assert handle.read() == "déjà vu\n".encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"text\x00with a NUL", "binary"),
        (b"caf\xe9 latin-1", "not valid UTF-8"),
        (b"x" * 2048, "larger than the limit of 1,024 bytes"),
    ],
)
def test_upload_create_rejects_bad_files(
    alice: User, settings: Any, content: bytes, message: str
) -> None:
    settings.COREBOARD_UPLOAD_MAX_BYTES = 1024
    with pytest.raises(services.Rejected) as caught:
        services.upload_create(owner=alice, file=text_file(content))
    assert message in caught.value.errors["file"][0]
    assert not Upload.objects.exists()


def test_wordcount_needs_an_upload_of_the_owner(alice: User, mallory: User) -> None:
    upload = services.upload_create(owner=alice, file=text_file(b"one two two"))
    for owner, upload_id in ((mallory, upload.pk), (alice, upload.pk + 1000)):
        with pytest.raises(services.Rejected) as caught:
            services.job_create(
                owner=owner, kind="wordcount", params={"upload": upload_id, "chunks": 2, "top": 3}
            )
        assert f"No upload with id {upload_id}" in caught.value.errors["params"]["upload"][0]
    assert not Job.objects.exists()
    job = services.job_create(
        owner=alice, kind="wordcount", params={"upload": upload.pk, "chunks": 2, "top": 3}
    )
    assert job.params["upload"] == upload.pk
    assert job.total_chunks == 2
