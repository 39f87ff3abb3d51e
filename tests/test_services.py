from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import kinds, services
from jobs.models import Chunk, Job, Upload

pytestmark = pytest.mark.django_db


def create_burn_job(owner: User, *, chunks: int = 4, parallelism: int = 2) -> Job:
    return services.job_create(
        owner=owner, kind="burn", params={"chunks": chunks, "ms": 1}, parallelism=parallelism
    )


def run_to_completion(chunk: Chunk, result: Any = None) -> None:
    assert services.chunk_start(chunk_id=chunk.pk, worker="test", pid=1) is not None
    services.chunk_complete(chunk_id=chunk.pk, result=result or {"iterations": 1}, cpu_seconds=0.5)


def test_job_create_stores_chunks_and_queues_a_window(
    alice: User, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = create_burn_job(alice, chunks=5, parallelism=2)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert job.total_chunks == 5
    assert job.started_at is not None
    statuses = list(job.chunks.order_by("index").values_list("status", flat=True))
    assert statuses == ["queued", "queued", "pending", "pending", "pending"]
    assert dispatched == list(job.chunks.filter(index__lt=2).values_list("id", flat=True))


def test_job_create_rejects_bad_input_and_stores_nothing(alice: User) -> None:
    with pytest.raises(services.JobRejected) as caught:
        services.job_create(owner=alice, kind="primes", params={"start": 5, "stop": 1, "chunks": 1})
    assert "stop" in caught.value.errors["params"]
    with pytest.raises(services.JobRejected) as caught:
        services.job_create(owner=alice, kind="nope", params={})
    assert "Unknown kind 'nope'" in caught.value.errors["kind"][0]
    with pytest.raises(services.JobRejected) as caught:
        create_burn_job(alice, parallelism=0)
    assert "between 1 and" in caught.value.errors["parallelism"][0]
    assert not Job.objects.exists()
    assert not Chunk.objects.exists()


def test_each_completion_dispatches_the_next_chunk(
    alice: User, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = create_burn_job(alice, chunks=3, parallelism=1)
    first = job.chunks.get(index=0)
    with django_capture_on_commit_callbacks(execute=True):
        run_to_completion(first)
    assert dispatched == [first.pk, job.chunks.get(index=1).pk]
    assert job.chunks.filter(status__in=Chunk.IN_FLIGHT_STATUSES).count() == 1


def test_duplicate_completion_counts_once(alice: User, dispatched: list[int]) -> None:
    job = create_burn_job(alice, chunks=2)
    services.job_dispatch(job_id=job.pk)
    chunk = job.chunks.get(index=0)
    run_to_completion(chunk)
    # The same chunk redelivered and completed again (at-least-once execution).
    services.chunk_complete(chunk_id=chunk.pk, result={"iterations": 99}, cpu_seconds=9.0)
    job.refresh_from_db()
    assert job.done_chunks == 1
    assert job.cpu_seconds == pytest.approx(0.5)
    chunk.refresh_from_db()
    assert chunk.result == {"iterations": 1}


def test_combine_runs_once_when_the_last_chunk_completes(
    alice: User, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[Any]] = []
    burn = kinds.get("burn")
    monkeypatch.setattr(
        burn, "combine", lambda params, partials: calls.append(partials) or {"ok": 1}
    )
    job = create_burn_job(alice, chunks=2, parallelism=2)
    services.job_dispatch(job_id=job.pk)
    for chunk in job.chunks.all():
        run_to_completion(chunk, {"iterations": chunk.index})
    for chunk in job.chunks.all():
        services.chunk_complete(chunk_id=chunk.pk, result={"iterations": 7}, cpu_seconds=1)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"ok": 1}
    assert calls == [[{"iterations": 0}, {"iterations": 1}]]
    assert job.finished_at is not None
    assert job.wall_seconds is not None
    assert job.speedup is not None


def test_chunk_failure_fails_the_job_and_cancels_the_rest(
    alice: User, dispatched: list[int]
) -> None:
    job = create_burn_job(alice, chunks=4, parallelism=2)
    services.job_dispatch(job_id=job.pk)
    chunk = job.chunks.get(index=0)
    services.chunk_start(chunk_id=chunk.pk, worker="test", pid=1)
    services.chunk_fail(chunk_id=chunk.pk, error="Traceback...\nRuntimeError: boom")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.failed_chunks == 1
    assert "RuntimeError: boom" in job.error
    assert "Chunk 0 failed after 1 attempt" in job.error
    statuses = dict(job.chunks.values_list("index", "status"))
    assert statuses == {0: "failed", 1: "cancelled", 2: "cancelled", 3: "cancelled"}


def test_retry_keeps_the_chunk_in_flight_with_its_error(alice: User, dispatched: list[int]) -> None:
    job = create_burn_job(alice, chunks=1)
    services.job_dispatch(job_id=job.pk)
    chunk = job.chunks.get()
    services.chunk_start(chunk_id=chunk.pk, worker="test", pid=1)
    services.chunk_retry_scheduled(chunk_id=chunk.pk, error="RuntimeError: try again")
    chunk.refresh_from_db()
    assert chunk.status == Chunk.Status.QUEUED
    assert chunk.error == "RuntimeError: try again"
    assert services.chunk_start(chunk_id=chunk.pk, worker="test", pid=2).attempts == 2


def test_cancel_stops_queued_chunks_from_starting(alice: User, dispatched: list[int]) -> None:
    job = create_burn_job(alice, chunks=3, parallelism=2)
    services.job_dispatch(job_id=job.pk)
    assert services.job_cancel(job=job) is True
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert set(job.chunks.values_list("status", flat=True)) == {"cancelled"}
    queued = job.chunks.get(index=0)
    assert services.chunk_start(chunk_id=queued.pk, worker="test", pid=1) is None
    assert services.job_cancel(job=job) is False


def test_running_chunk_stops_at_its_next_progress_call(
    alice: User, dispatched: list[int], settings: Any
) -> None:
    settings.COREBOARD_CANCEL_POLL_SECONDS = 0
    job = create_burn_job(alice, chunks=1)
    services.job_dispatch(job_id=job.pk)
    chunk = services.chunk_start(chunk_id=job.chunks.get().pk, worker="test", pid=1)
    assert chunk is not None
    progress = services.ChunkProgress(chunk)
    progress(1, 10)
    services.job_cancel(job=job)
    with pytest.raises(services.ChunkCancelled):
        progress(2, 10)


def test_a_chunk_that_keeps_killing_its_worker_is_failed(
    alice: User, dispatched: list[int], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.COREBOARD_CHUNK_MAX_ATTEMPTS = 2
    job = create_burn_job(alice, chunks=1)
    services.job_dispatch(job_id=job.pk)
    chunk_id = job.chunks.get().pk
    # Each start without a completion stands for a worker process lost mid-chunk.
    assert services.chunk_start(chunk_id=chunk_id, worker="test", pid=1) is not None
    assert services.chunk_start(chunk_id=chunk_id, worker="test", pid=2) is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert services.chunk_start(chunk_id=chunk_id, worker="test", pid=3) is None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "delivered 2 times" in job.error


def test_chunk_run_records_result_cpu_and_worker(alice: User, dispatched: list[int]) -> None:
    job = services.job_create(
        owner=alice, kind="primes", params={"start": 0, "stop": 1000, "chunks": 1}
    )
    services.job_dispatch(job_id=job.pk)
    chunk = job.chunks.get()
    services.chunk_run(chunk_id=chunk.pk)
    chunk.refresh_from_db()
    job.refresh_from_db()
    assert chunk.status == Chunk.Status.DONE
    assert chunk.result == {"count": 168}
    assert chunk.pid is not None
    assert chunk.worker
    assert chunk.cpu_seconds is not None
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"count": 168}


def test_chunk_run_turns_an_exception_into_chunk_failed(alice: User, dispatched: list[int]) -> None:
    job = services.job_create(
        owner=alice, kind="burn", params={"chunks": 1, "ms": 10, "fail_rate": 1}
    )
    services.job_dispatch(job_id=job.pk)
    with pytest.raises(services.ChunkFailed) as caught:
        services.chunk_run(chunk_id=job.chunks.get().pk)
    assert "InjectedFailure: burn: injected failure in chunk 0" in caught.value.error
    assert "Traceback" in caught.value.error


def test_every_job_change_bumps_its_version(alice: User, dispatched: list[int]) -> None:
    job = create_burn_job(alice, chunks=2, parallelism=1)
    versions = [job.version]
    services.job_dispatch(job_id=job.pk)
    job.refresh_from_db()
    versions.append(job.version)
    run_to_completion(job.chunks.get(index=0))
    job.refresh_from_db()
    versions.append(job.version)
    services.job_cancel(job=job)
    job.refresh_from_db()
    versions.append(job.version)
    assert versions == sorted(set(versions))


def test_first_find_finishes_the_job_and_cancels_the_rest(
    alice: User, dispatched: list[int]
) -> None:
    job = services.job_create(
        owner=alice,
        kind="hash_search",
        params={"prefix": "x", "difficulty": 2, "chunks": 4},
        parallelism=2,
    )
    services.job_dispatch(job_id=job.pk)
    first, second = job.chunks.filter(index__in=[0, 1]).order_by("index")
    services.chunk_start(chunk_id=first.pk, worker="test", pid=1)
    services.chunk_start(chunk_id=second.pk, worker="test", pid=2)
    services.chunk_complete(chunk_id=second.pk, result={"nonce": 7, "hash": "00ab"}, cpu_seconds=1)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"nonce": 7, "hash": "00ab"}
    statuses = dict(job.chunks.values_list("index", "status"))
    assert statuses == {0: "running", 1: "done", 2: "cancelled", 3: "cancelled"}
    # The chunk still running stops at its next progress call.
    assert services.chunk_start(chunk_id=job.chunks.get(index=2).pk, worker="t", pid=3) is None


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
    with pytest.raises(ValidationError) as caught:
        services.upload_create(owner=alice, file=text_file(content))
    assert message in caught.value.message_dict["file"][0]
    assert not Upload.objects.exists()


def test_wordcount_needs_an_upload_of_the_owner(alice: User, mallory: User) -> None:
    upload = services.upload_create(owner=alice, file=text_file(b"one two two"))
    for owner, upload_id in ((mallory, upload.pk), (alice, upload.pk + 1000)):
        with pytest.raises(services.JobRejected) as caught:
            services.job_create(
                owner=owner, kind="wordcount", params={"upload": upload_id, "chunks": 2, "top": 3}
            )
        assert f"No upload with id {upload_id}" in caught.value.errors["params"]["upload"][0]
    assert not Job.objects.exists()
    job = services.job_create(
        owner=alice, kind="wordcount", params={"upload": upload.pk, "chunks": 2, "top": 3}
    )
    assert job.params["upload"]["name"] == "book.txt"
    assert job.total_chunks == 2
