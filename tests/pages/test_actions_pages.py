"""Actions on a job in the pages: buttons, retry, delete, run again, the new-job preview."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from jobs import services
from jobs.models import Job, Upload
from tests.factories import (
    make_job,
    start,
)

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


def opening_tag(page: str, element_id: str) -> str:
    match = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', page)
    assert match, f"no element #{element_id}"
    return match.group(0)


def shown(page: str, element_id: str) -> bool:
    return not re.search(r"\shidden\b", opening_tag(page, element_id))


def test_every_action_is_on_the_page_for_the_script_to_show(
    alice: User, alice_client: Client, failed_job: Job, dispatched: list[int]
) -> None:
    # Which actions apply is decided in one place, jobActions() in static/jobs/job_state.mjs
    # (tests/js/job_state.test.mjs); the page carries them all, hidden until it runs.
    running = make_job(alice)
    start(running)
    for job in (failed_job, running):
        page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
        for element_id in (
            "cancel-link",
            "notify-button",
            "retry-form",
            "rerun-link",
            "delete-link",
        ):
            assert not shown(page, element_id), element_id
        assert f'href="/jobs/{job.pk}/cancel/"' in page
        assert f'action="/jobs/{job.pk}/retry/"' in page
        assert "Retry</button>" in page
        assert f'href="/jobs/new/?rerun={job.pk}"' in page
        assert f'href="/jobs/{job.pk}/delete/"' in page
        assert 'src="/static/jobs/job.mjs"' in page
        assert f'data-socket-url="/ws/jobs/{job.pk}/"' in page


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
    job = make_job(alice)
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
    job = make_job(alice, "wordcount", upload=upload.pk, chunks=2, top=3)
    page = alice_client.get("/jobs/new/", {"rerun": job.pk}).content.decode()
    assert f'<input type="hidden" name="params-upload-kept" value="{upload.pk}">' in page
    assert "Uses “book.txt” again unless you choose another file." in page
    # A browser also sends the empty file input, under the field's own name.
    form = {"kind": "wordcount", "rerun": job.pk, "params-upload-kept": upload.pk,
            "params-upload": "", "params-chunks": "3", "params-top": "2"}  # fmt: skip
    assert alice_client.post("/jobs/new/", form).status_code == 302
    same = Job.objects.filter(rerun_of=job).get()
    assert same.params["upload"] == upload.pk
    assert same.total_chunks == 3
    other = SimpleUploadedFile("other.txt", b"x y z")
    assert alice_client.post("/jobs/new/", {**form, "params-upload": other}).status_code == 302
    newest = Job.objects.filter(rerun_of=job).exclude(pk=same.pk).get()
    assert Upload.objects.get(pk=newest.params["upload"]).name == "other.txt"


def test_a_kept_upload_name_is_escaped(alice: User, alice_client: Client) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("<i>x.txt", b"a b"))
    assert upload.name == "<i>x.txt"
    job = make_job(alice, "wordcount", upload=upload.pk, chunks=1, top=1)
    page = alice_client.get("/jobs/new/", {"rerun": job.pk}).content.decode()
    assert "Uses “&lt;i&gt;x.txt” again" in page
    assert "<i>x.txt" not in page


def test_new_job_page_has_the_chunk_preview(alice_client: Client) -> None:
    page = alice_client.get("/jobs/new/", {"kind": "burn"}).content.decode()
    assert 'id="chunk-preview"' in page
    assert 'aria-live="polite"' in opening_tag(page, "chunk-preview")
    assert 'data-preview-url="/api/jobs/preview/?form=1"' in page
    assert "jobs/new_job.mjs" in page
