"""Actions on a job (retry failed chunks, run again, delete) and the new-job chunk preview."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from jobs import kinds, selectors, services
from jobs.models import Chunk, Job, Upload
from jobs.services import chunks
from tests.factories import (
    TEST_OWNER,
    burn_job,
    claim_one,
    complete,
    complete_next,
    fail_next,
    start,
)
from tests.test_api import BAD_JOB_INPUT, JOB_FIELDS

pytestmark = [pytest.mark.services, pytest.mark.django_db]


BURN = {"chunks": 4, "ms": 1, "fail_rate": 0.0}


def statuses(job: Job) -> dict[int, str]:
    return dict(job.chunks.values_list("index", "status"))


@pytest.fixture
def failed_job(alice: User, dispatched: list[int]) -> Job:
    """Chunk 0 done, chunk 1 failed, chunks 2 and 3 cancelled when the job failed."""
    job = burn_job(alice, chunks=4, parallelism=2)
    start(job)
    complete_next(job)
    fail_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert statuses(job) == {0: "done", 1: "failed", 2: "cancelled", 3: "cancelled"}
    dispatched.clear()
    return job


# --- retry failed chunks: the service ----------------------------------------------------------


def test_retry_requeues_only_the_unfinished_chunks(
    failed_job: Job, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    version = failed_job.version
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_retry_failed(job=failed_job) is True
    assert failed_job.status == Job.Status.RUNNING
    assert failed_job.failed_chunks == 0
    assert failed_job.done_chunks == 1
    assert failed_job.finished_at is None
    assert failed_job.error == ""
    assert failed_job.version > version
    assert statuses(failed_job) == {0: "done", 1: "pending", 2: "pending", 3: "pending"}
    assert dispatched == [failed_job.pk]
    retried = failed_job.chunks.get(index=1)
    assert retried.attempts == 0
    assert "RuntimeError: boom" in retried.error


def test_retried_chunks_complete_and_combine_runs_once(
    failed_job: Job, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[Any]] = []
    monkeypatch.setattr(
        kinds.get("burn"), "combine", lambda params, partials: calls.append(partials) or {"ok": 1}
    )
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
    job = burn_job(alice, chunks=3, parallelism=2)
    start(job)
    # The old run: chunk 0 is still running on a worker when chunk 1 fails the job.
    slow = claim_one(job, owner="old|10|boot")
    fail_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert statuses(job) == {0: "running", 1: "failed", 2: "cancelled"}

    assert services.job_retry_failed(job=job) is True
    # Chunk 0 keeps its lease: the old worker's result now counts for the retried job.
    assert statuses(job) == {0: "running", 1: "pending", 2: "pending"}
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
    job = burn_job(alice, chunks=1, parallelism=1)
    start(job)
    claim_one(job)
    chunks.leases_release(owner=TEST_OWNER)  # a lost run
    fail_next(job)
    assert job.chunks.get().attempts == 2
    assert services.job_retry_failed(job=job) is True
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
    assert statuses(failed_job) == {0: "done", 1: "failed", 2: "cancelled", 3: "cancelled"}
    assert services.job_retry_failed(job=failed_job) is True


def test_retry_refuses_jobs_without_failed_chunks(alice: User, dispatched: list[int]) -> None:
    running = burn_job(alice, chunks=2)
    start(running)
    cancelled = burn_job(alice, chunks=2)
    services.job_cancel(job=cancelled)
    succeeded = burn_job(alice, chunks=1)
    start(succeeded)
    complete_next(succeeded)
    for job in (running, cancelled, succeeded):
        job.refresh_from_db()
        before = (job.status, job.version)
        assert services.job_retry_failed(job=job) is False
        job.refresh_from_db()
        assert (job.status, job.version) == before


def test_a_failed_combine_keeps_the_chunks_and_retry_only_combines_again(
    alice: User, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    burn = kinds.get("burn")
    real_combine = burn.combine
    monkeypatch.setattr(burn, "combine", lambda params, partials: 1 / 0)
    job = burn_job(alice, chunks=2)
    start(job)
    complete_next(job)
    complete_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("combine failed")
    assert statuses(job) == {0: "done", 1: "done"}
    monkeypatch.setattr(burn, "combine", real_combine)
    assert services.job_retry_failed(job=job) is True
    assert job.status == Job.Status.RUNNING
    assert job.error == ""
    # The reconciler finishes a running job with nothing left to run: the combine alone.
    assert chunks.jobs_finish_idle() == [job.pk]
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"chunks": 2, "iterations": 2}
    assert job.done_chunks == 2
    assert statuses(job) == {0: "done", 1: "done"}
    assert chunks.jobs_finish_idle() == []


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
    assert statuses(again) == {0: "pending", 1: "pending", 2: "pending", 3: "pending"}


def test_rerun_of_a_wordcount_job_reads_the_same_upload(alice: User, mallory: User) -> None:
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("book.txt", b"one two two three")
    )
    job = services.job_create(
        owner=alice, kind="wordcount", params={"upload": upload.pk, "chunks": 2, "top": 3}
    )
    assert selectors.job_rerun_params(job) == {"upload": upload.pk, "chunks": 2, "top": 3}
    again = services.job_rerun(job=job, owner=alice)
    assert again.params == job.params
    # Somebody else (staff, say) cannot read alice's file through a rerun.
    with pytest.raises(services.JobRejected) as caught:
        services.job_rerun(job=job, owner=mallory)
    assert f"No upload with id {upload.pk}" in caught.value.errors["params"]["upload"][0]


def test_delete_removes_the_job_its_chunks_and_result_file(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    job = burn_job(alice)
    rerun = services.job_rerun(job=job, owner=alice)
    services.job_cancel(job=job)
    job.result_file.save("result.png", ContentFile(b"\x89PNG"), save=True)
    name = job.result_file.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_delete(job=job) is True
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not Chunk.objects.filter(job_id=job.pk).exists()
    assert not default_storage.exists(name)
    rerun.refresh_from_db()
    assert rerun.rerun_of is None


def test_delete_keeps_the_upload_the_job_read(alice: User) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("b.txt", b"a b c"))
    job = services.job_create(
        owner=alice, kind="wordcount", params={"upload": upload.pk, "chunks": 1, "top": 1}
    )
    services.job_cancel(job=job)
    assert services.job_delete(job=job) is True
    assert Upload.objects.filter(pk=upload.pk).exists()


def test_delete_refuses_an_active_job(alice: User, dispatched: list[int]) -> None:
    job = burn_job(alice)
    start(job)
    assert services.job_delete(job=job) is False
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert job.chunks.count() == 4


def test_job_plan_validates_and_splits_without_writing(alice: User) -> None:
    plan = services.job_plan(owner=alice, kind="burn", params={"chunks": 6, "ms": 1})
    assert len(plan.specs) == 6
    assert plan.params == {"chunks": 6, "ms": 1, "fail_rate": 0.0}
    with pytest.raises(services.JobRejected) as caught:
        services.job_plan(owner=alice, kind="burn", params={"chunks": 0, "ms": 1})
    assert "chunks" in caught.value.errors["params"]
    assert not Job.objects.exists()


# --- the API -------------------------------------------------------------------------------------


def test_api_retry_returns_the_running_job_then_conflicts(
    alice_api: APIClient, failed_job: Job
) -> None:
    response = alice_api.post(f"/api/jobs/{failed_job.pk}/retry/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["status"] == "running"
    assert body["failed_chunks"] == 0
    again = alice_api.post(f"/api/jobs/{failed_job.pk}/retry/")
    assert again.status_code == 409
    assert "nothing to retry" in again.json()["status"][0]


def test_api_delete(alice_api: APIClient, alice: User, failed_job: Job) -> None:
    response = alice_api.delete(f"/api/jobs/{failed_job.pk}/")
    assert response.status_code == 204
    assert not Job.objects.filter(pk=failed_job.pk).exists()
    assert alice_api.get(f"/api/jobs/{failed_job.pk}/").status_code == 404
    active = burn_job(alice)
    conflict = alice_api.delete(f"/api/jobs/{active.pk}/")
    assert conflict.status_code == 409
    assert "cancel it first" in conflict.json()["status"][0]
    assert Job.objects.filter(pk=active.pk).exists()


def test_api_rerun_creates_a_new_job(alice_api: APIClient, failed_job: Job) -> None:
    response = alice_api.post(f"/api/jobs/{failed_job.pk}/rerun/")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["id"] != failed_job.pk
    assert body["params"] == failed_job.params
    assert body["status"] == "pending"
    assert Job.objects.get(pk=body["id"]).rerun_of_id == failed_job.pk


def test_api_staff_may_act_on_any_job(staff: User, failed_job: Job) -> None:
    client = APIClient()
    client.force_authenticate(staff)
    rerun = client.post(f"/api/jobs/{failed_job.pk}/rerun/")
    assert rerun.status_code == 201
    assert Job.objects.get(pk=rerun.json()["id"]).owner == staff
    assert client.post(f"/api/jobs/{failed_job.pk}/retry/").status_code == 200


def test_api_actions_on_another_users_job_are_not_found(
    mallory_api: APIClient, failed_job: Job
) -> None:
    assert mallory_api.post(f"/api/jobs/{failed_job.pk}/retry/").status_code == 404
    assert mallory_api.post(f"/api/jobs/{failed_job.pk}/rerun/").status_code == 404
    assert mallory_api.delete(f"/api/jobs/{failed_job.pk}/").status_code == 404
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.FAILED
    assert Job.objects.count() == 1


def test_api_session_posts_need_the_csrf_token(alice: User, failed_job: Job) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    preview = {"kind": "burn", "params": BURN}
    for method, url, body in (
        ("post", f"/api/jobs/{failed_job.pk}/retry/", None),
        ("post", f"/api/jobs/{failed_job.pk}/rerun/", None),
        ("delete", f"/api/jobs/{failed_job.pk}/", None),
        ("post", "/api/jobs/preview/", preview),
    ):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 403, url
        assert "CSRF" in response.json()["detail"]
    assert Job.objects.count() == 1
    # With the token from a page, the same request goes through.
    client.get("/jobs/new/")
    token = client.cookies["csrftoken"].value
    response = client.post("/api/jobs/preview/", preview, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_api_preview_counts_chunks_and_creates_nothing(alice_api: APIClient) -> None:
    response = alice_api.post(
        "/api/jobs/preview/",
        {"kind": "primes", "params": {"start": 0, "stop": 1000, "chunks": 7}, "parallelism": 2},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"chunks": 7}
    # Form values arrive as strings from the page's script.
    strings = alice_api.post(
        "/api/jobs/preview/?form=1",
        {"kind": "burn", "params": {"chunks": "12", "ms": "5", "fail_rate": ""}},
        format="json",
    )
    assert strings.json() == {"chunks": 12}
    typo = alice_api.post(
        "/api/jobs/preview/?form=1", {"kind": "burn", "params": {"chunks": "x"}}, format="json"
    )
    assert typo.json() == {"params": {"chunks": ["Enter a whole number."]}}
    assert not Job.objects.exists()
    assert not Chunk.objects.exists()


@pytest.mark.parametrize(("payload", "path", "message"), BAD_JOB_INPUT)
def test_api_preview_rejects_like_creation(
    alice_api: APIClient, payload: dict, path: list[str], message: str
) -> None:
    previewed = alice_api.post("/api/jobs/preview/", payload, format="json")
    created = alice_api.post("/api/jobs/", payload, format="json")
    assert previewed.status_code == created.status_code == 400
    assert previewed.json() == created.json()
    errors = previewed.json()
    for key in path:
        errors = errors[key]
    assert message in " ".join(errors)
    assert not Job.objects.exists()


def test_api_preview_checks_upload_ownership(alice: User, mallory_api: APIClient) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("s.txt", b"a b"))
    response = mallory_api.post(
        "/api/jobs/preview/",
        {"kind": "wordcount", "params": {"upload": upload.pk, "chunks": 2, "top": 1}},
        format="json",
    )
    assert response.status_code == 400
    assert f"No upload with id {upload.pk}" in response.json()["params"]["upload"][0]


# --- the pages -----------------------------------------------------------------------------------


def opening_tag(page: str, element_id: str) -> str:
    match = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', page)
    assert match, f"no element #{element_id}"
    return match.group(0)


def shown(page: str, element_id: str) -> bool:
    return not re.search(r"\shidden\b", opening_tag(page, element_id))


def test_action_buttons_show_only_when_they_apply(
    alice: User, alice_client: Client, failed_job: Job, dispatched: list[int]
) -> None:
    page = alice_client.get(f"/jobs/{failed_job.pk}/").content.decode()
    assert shown(page, "retry-form")
    assert "Retry</button>" in page
    assert shown(page, "rerun-link")
    assert f'href="/jobs/new/?rerun={failed_job.pk}"' in page
    assert shown(page, "delete-link")
    assert f'href="/jobs/{failed_job.pk}/delete/"' in page

    running = burn_job(alice)
    start(running)
    page = alice_client.get(f"/jobs/{running.pk}/").content.decode()
    assert not shown(page, "retry-form")
    assert not shown(page, "delete-link")
    assert shown(page, "rerun-link")

    services.job_cancel(job=running)
    page = alice_client.get(f"/jobs/{running.pk}/").content.decode()
    assert not shown(page, "retry-form")
    assert shown(page, "delete-link")


def test_retry_button_retries(alice_client: Client, failed_job: Job) -> None:
    assert alice_client.get(f"/jobs/{failed_job.pk}/retry/").status_code == 405
    response = alice_client.post(f"/jobs/{failed_job.pk}/retry/", follow=True)
    assert response.redirect_chain == [(f"/jobs/{failed_job.pk}/", 302)]
    assert "retrying what failed" in response.content.decode()
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.RUNNING
    again = alice_client.post(f"/jobs/{failed_job.pk}/retry/", follow=True)
    assert "nothing to retry" in again.content.decode()


def test_delete_asks_for_confirmation_then_deletes(alice_client: Client, failed_job: Job) -> None:
    page = alice_client.get(f"/jobs/{failed_job.pk}/delete/").content.decode()
    assert f"Delete job #{failed_job.pk}?" in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert f'<form method="post" action="/jobs/{failed_job.pk}/delete/" class="actions">' in page
    assert f'href="/jobs/{failed_job.pk}/">Cancel</a>' in page
    assert Job.objects.filter(pk=failed_job.pk).exists()
    response = alice_client.post(f"/jobs/{failed_job.pk}/delete/", follow=True)
    assert response.redirect_chain == [("/history/", 302)]
    assert f"Job {failed_job.pk} deleted." in response.content.decode()
    assert not Job.objects.filter(pk=failed_job.pk).exists()


def test_delete_page_refuses_an_active_job(alice: User, alice_client: Client) -> None:
    job = burn_job(alice)
    page = alice_client.get(f"/jobs/{job.pk}/delete/").content.decode()
    assert "Cancel it before deleting it." in page
    assert "csrfmiddlewaretoken" not in page.split("<main")[1]
    response = alice_client.post(f"/jobs/{job.pk}/delete/", follow=True)
    assert response.redirect_chain == [(f"/jobs/{job.pk}/", 302)]
    assert "cancel it before deleting it" in response.content.decode()
    assert Job.objects.filter(pk=job.pk).exists()


def test_action_pages_of_another_users_job_are_not_found(
    mallory_client: Client, failed_job: Job
) -> None:
    assert mallory_client.get(f"/jobs/{failed_job.pk}/delete/").status_code == 404
    assert mallory_client.post(f"/jobs/{failed_job.pk}/delete/").status_code == 404
    assert mallory_client.post(f"/jobs/{failed_job.pk}/retry/").status_code == 404
    assert mallory_client.get("/jobs/new/", {"rerun": failed_job.pk}).status_code == 404
    assert mallory_client.get("/jobs/new/", {"rerun": "x"}).status_code == 404
    posted = mallory_client.post(
        "/jobs/new/",
        {"kind": "burn", "rerun": failed_job.pk, "params-chunks": "1", "params-ms": "1"},
    )
    assert posted.status_code == 404
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.FAILED
    assert Job.objects.count() == 1


def test_page_actions_need_the_csrf_token(alice: User, failed_job: Job) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/jobs/{failed_job.pk}/retry/").status_code == 403
    assert client.post(f"/jobs/{failed_job.pk}/delete/").status_code == 403
    failed_job.refresh_from_db()
    assert failed_job.status == Job.Status.FAILED


def test_run_again_prefills_the_form_and_links_the_new_job(
    alice_client: Client, failed_job: Job
) -> None:
    page = alice_client.get("/jobs/new/", {"rerun": failed_job.pk}).content.decode()
    assert f'<input type="hidden" name="rerun" value="{failed_job.pk}">' in page
    assert 'name="kind" value="burn"' in page
    assert re.search(r'name="params-chunks" value="4"', page)
    assert re.search(r'name="params-ms" value="1"', page)
    assert re.search(r'name="parallelism" value="2"', page)
    response = alice_client.post(
        "/jobs/new/",
        {"kind": "burn", "rerun": failed_job.pk, "params-chunks": "6", "params-ms": "1",
         "params-fail_rate": "0", "parallelism": "2"},
    )  # fmt: skip
    assert response.status_code == 302
    created = Job.objects.exclude(pk=failed_job.pk).get()
    assert created.rerun_of == failed_job
    assert created.params["chunks"] == 6


def test_run_again_keeps_the_upload_unless_another_file_is_picked(
    alice: User, alice_client: Client
) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("book.txt", b"a b b"))
    job = services.job_create(
        owner=alice, kind="wordcount", params={"upload": upload.pk, "chunks": 2, "top": 3}
    )
    page = alice_client.get("/jobs/new/", {"rerun": job.pk}).content.decode()
    assert f'<input type="hidden" name="params-upload-kept" value="{upload.pk}">' in page
    assert "Uses “book.txt” again unless you choose another file." in page
    # A browser also sends the empty file input, under the field's own name.
    form = {"kind": "wordcount", "rerun": job.pk, "params-upload-kept": upload.pk,
            "params-upload": "", "params-chunks": "3", "params-top": "2"}  # fmt: skip
    assert alice_client.post("/jobs/new/", form).status_code == 302
    same = Job.objects.filter(rerun_of=job).get()
    assert same.params["upload"]["id"] == upload.pk
    assert same.total_chunks == 3
    other = SimpleUploadedFile("other.txt", b"x y z")
    assert alice_client.post("/jobs/new/", {**form, "params-upload": other}).status_code == 302
    newest = Job.objects.filter(rerun_of=job).exclude(pk=same.pk).get()
    assert newest.params["upload"]["name"] == "other.txt"


def test_a_kept_upload_name_is_escaped(alice: User, alice_client: Client) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("<i>x.txt", b"a b"))
    assert upload.name == "<i>x.txt"
    job = services.job_create(
        owner=alice, kind="wordcount", params={"upload": upload.pk, "chunks": 1, "top": 1}
    )
    page = alice_client.get("/jobs/new/", {"rerun": job.pk}).content.decode()
    assert "Uses “&lt;i&gt;x.txt” again" in page
    assert "<i>x.txt" not in page


def test_new_job_page_has_the_chunk_preview(alice_client: Client) -> None:
    page = alice_client.get("/jobs/new/", {"kind": "burn"}).content.decode()
    assert 'id="chunk-preview"' in page
    assert 'aria-live="polite"' in opening_tag(page, "chunk-preview")
    assert 'data-preview-url="/api/jobs/preview/?form=1"' in page
    assert "jobs/new_job.js" in page
