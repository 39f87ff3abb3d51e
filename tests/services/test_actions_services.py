"""Actions on a job through the services: retry failed chunks, run again, delete, plan."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import kinds, services
from jobs.engine import chunks
from jobs.models import Chunk, Job, Upload
from tests.factories import (
    TEST_PROCESS,
    chunk_statuses,
    claim_one,
    complete,
    complete_next,
    fail_next,
    make_job,
    start,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db]


# --- retry failed chunks: the service ----------------------------------------------------------


def test_retry_requeues_only_the_unfinished_chunks(
    failed_job: Job, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    version = failed_job.version
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_retry_failed(job=failed_job) == failed_job
    assert failed_job.status == Job.Status.RUNNING
    assert failed_job.failed_chunks == 0
    assert failed_job.done_chunks == 1
    assert failed_job.finished_at is None
    assert failed_job.error == ""
    assert failed_job.version > version
    assert chunk_statuses(failed_job) == {0: "done", 1: "pending", 2: "pending", 3: "pending"}
    assert dispatched == [failed_job.pk]
    retried = failed_job.chunks.get(index=1)
    assert retried.attempts == 0
    assert "RuntimeError: boom" in retried.error


def test_retried_chunks_complete_and_combine_runs_once(
    failed_job: Job, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[Any]] = []

    def combine(params: dict[str, Any], partials: list[Any]) -> dict[str, Any]:
        calls.append(partials)
        return {"ok": 1}

    monkeypatch.setattr(kinds.get("burn"), "combine", combine)
    services.job_retry_failed(job=failed_job)
    claimed = [complete_next(failed_job, {"iterations": index}) for index in (1, 2, 3)]
    # Late duplicates of every completion change nothing.
    for chunk in claimed:
        complete(failed_job, chunk, {"iterations": 99}, 9)
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.SUCCEEDED
    assert failed_job.result == {"ok": 1}
    assert failed_job.done_chunks == 4
    assert failed_job.failed_chunks == 0
    assert failed_job.cpu_seconds == pytest.approx(4 * 0.5)
    assert calls == [[{"iterations": 1}, {"iterations": 1}, {"iterations": 2}, {"iterations": 3}]]


def test_stale_work_of_the_old_run_does_not_double_count(
    alice: User, dispatched: list[int]
) -> None:
    job = make_job(alice, chunks=3, parallelism=2)
    start(job)
    # The old run: chunk 0 is still running on a worker when chunk 1 fails the job.
    slow = claim_one(job, process="old|10|boot")
    fail_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert chunk_statuses(job) == {0: "running", 1: "failed", 2: "cancelled"}

    assert services.job_retry_failed(job=job) == job
    # Chunk 0 keeps its lease: the old worker's result now counts for the retried job.
    assert chunk_statuses(job) == {0: "running", 1: "pending", 2: "pending"}
    complete(job, slow)
    complete(job, slow, {"iterations": 7}, 7)
    job.refresh_from_db()
    assert job.done_chunks == 1
    assert job.cpu_seconds == pytest.approx(0.5)
    assert [complete_next(job).index for _ in range(2)] == [1, 2]
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.done_chunks == 3
    assert job.cpu_seconds == pytest.approx(1.5)


def test_a_retried_chunk_gets_its_attempts_afresh(alice: User, dispatched: list[int]) -> None:
    job = make_job(alice, chunks=1, parallelism=1)
    start(job)
    claim_one(job)
    chunks.leases_release(process=TEST_PROCESS)  # a lost run
    fail_next(job)
    assert job.chunks.get().attempts == 2
    assert services.job_retry_failed(job=job) == job
    again = claim_one(job)
    assert (again.attempts, again.runs_lost) == (1, 0)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING


def test_retry_fails_the_job_again_when_the_chunk_fails_again(
    failed_job: Job, dispatched: list[int]
) -> None:
    services.job_retry_failed(job=failed_job)
    assert fail_next(failed_job).index == 1
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.FAILED
    assert failed_job.failed_chunks == 1
    assert chunk_statuses(failed_job) == {0: "done", 1: "failed", 2: "cancelled", 3: "cancelled"}
    assert services.job_retry_failed(job=failed_job) == failed_job


def test_retry_refuses_jobs_without_failed_chunks(alice: User, dispatched: list[int]) -> None:
    running = make_job(alice, chunks=2)
    start(running)
    cancelled = make_job(alice, chunks=2)
    services.job_cancel(job=cancelled)
    succeeded = make_job(alice, chunks=1)
    start(succeeded)
    complete_next(succeeded)
    for job in (running, cancelled, succeeded):
        job.refresh_from_db()
        before = (job.status, job.version)
        with pytest.raises(services.Conflict, match="nothing to retry"):
            services.job_retry_failed(job=job)
        job.refresh_from_db()
        assert (job.status, job.version) == before


def test_a_failed_combine_keeps_the_chunks_and_retry_only_combines_again(
    alice: User, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    burn = kinds.get("burn")
    real_combine = burn.combine
    monkeypatch.setattr(burn, "combine", lambda params, partials: 1 / 0)
    job = make_job(alice, chunks=2)
    start(job)
    complete_next(job)
    complete_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("combine failed")
    assert chunk_statuses(job) == {0: "done", 1: "done"}
    monkeypatch.setattr(burn, "combine", real_combine)
    assert services.job_retry_failed(job=job) == job
    assert job.status == Job.Status.RUNNING
    assert job.error == ""
    # The reconciler finishes a running job with nothing left to run: the combine alone.
    assert chunks.jobs_finish_idle() == [job.pk]
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"chunks": 2, "iterations": 2}
    assert job.done_chunks == 2
    assert chunk_statuses(job) == {0: "done", 1: "done"}
    assert chunks.jobs_finish_idle() == []


def test_the_reconciler_leaves_an_idle_job_of_a_kind_it_lacks_alone(alice: User) -> None:
    """A worker without the kind would fail the job combining it ("unknown kind"); the slot
    that recorded its last chunk, or a worker that has the kind, combines it."""
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        job = make_job(alice, kinds_probe.NAME, chunks=1, ms=0)
        start(job)
        Chunk.objects.filter(job=job).update(status=Chunk.Status.DONE)
    assert chunks.jobs_finish_idle() == []
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING


# --- run again and delete: the services ---------------------------------------------------------


def test_rerun_copies_kind_params_parallelism_and_links_back(alice: User, failed_job: Job) -> None:
    again = services.job_rerun(job=failed_job, owner=alice)
    assert again.pk != failed_job.pk
    assert again.kind == "burn"
    assert again.params == failed_job.params
    assert again.parallelism == failed_job.parallelism
    assert again.rerun_of == failed_job
    assert again.owner == alice
    assert again.status == Job.Status.PENDING
    assert chunk_statuses(again) == {0: "pending", 1: "pending", 2: "pending", 3: "pending"}


def test_rerun_of_a_wordcount_job_reads_the_same_upload(alice: User, mallory: User) -> None:
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("book.txt", b"one two two three")
    )
    job = make_job(alice, "wordcount", upload=upload.pk, chunks=2, top=3)
    # The job keeps the id it was given; only its chunk specs know where the file is.
    assert job.params == {"upload": upload.pk, "chunks": 2, "top": 3}
    assert {spec["storage_name"] for spec in job.chunks.values_list("spec", flat=True)} == {
        upload.file.name
    }
    again = services.job_rerun(job=job, owner=alice)
    assert again.params == job.params
    # Somebody else (staff, say) cannot read alice's file through a rerun.
    with pytest.raises(services.Rejected) as caught:
        services.job_rerun(job=job, owner=mallory)
    assert f"No upload with id {upload.pk}" in caught.value.errors["params"]["upload"][0]


def test_delete_removes_the_job_its_chunks_and_result_file(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    job = make_job(alice)
    rerun = services.job_rerun(job=job, owner=alice)
    services.job_cancel(job=job)
    job.result_file.save("result.png", ContentFile(b"\x89PNG"), save=True)
    name = job.result_file.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        services.job_delete(job=job)
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not Chunk.objects.filter(job_id=job.pk).exists()
    assert not default_storage.exists(name)
    rerun.refresh_from_db()
    assert rerun.rerun_of is None


def test_delete_keeps_the_upload_the_job_read(alice: User) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("b.txt", b"a b c"))
    job = make_job(alice, "wordcount", upload=upload.pk, chunks=1, top=1)
    services.job_cancel(job=job)
    services.job_delete(job=job)
    assert Upload.objects.filter(pk=upload.pk).exists()


def test_delete_refuses_an_active_job(alice: User, dispatched: list[int]) -> None:
    job = make_job(alice)
    start(job)
    with pytest.raises(services.Conflict, match="cancel it before deleting it"):
        services.job_delete(job=job)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert job.chunks.count() == 4


def test_job_plan_validates_and_splits_without_writing(alice: User) -> None:
    plan = services.job_plan(owner=alice, kind="burn", params={"chunks": 6, "ms": 1})
    assert len(plan.specs) == 6
    assert plan.params == {"chunks": 6, "ms": 1, "fail_rate": 0.0}
    with pytest.raises(services.Rejected) as caught:
        services.job_plan(owner=alice, kind="burn", params={"chunks": 0, "ms": 1})
    assert "chunks" in caught.value.errors["params"]
    assert not Job.objects.exists()
