"""One's uploads: list, delete (API and page), and pruning files nothing references."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Upload
from jobs.services.uploads import media_prune
from tests.factories import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_dispatch(dispatched: list[int]) -> list[int]:
    return dispatched


def upload(api: APIClient, name: str = "words.txt", text: bytes = b"one two three") -> int:
    response = api.post("/api/uploads/", {"file": SimpleUploadedFile(name, text, "text/plain")})
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


@pytest.mark.api
def test_the_list_holds_only_my_uploads(alice_api: APIClient, mallory_api: APIClient) -> None:
    mine = upload(alice_api)
    upload(mallory_api, "theirs.txt")
    response = alice_api.get("/api/uploads/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert item["id"] == mine
    assert item["name"] == "words.txt"
    assert item["size"] == 13
    assert item["jobs"] == 0


@pytest.mark.api
def test_deleting_an_upload_removes_its_file(
    alice_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    upload_id = upload(alice_api)
    path = Path(Upload.objects.get(pk=upload_id).file.path)
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/uploads/{upload_id}/").status_code == 204
    assert not Upload.objects.filter(pk=upload_id).exists()
    assert not path.exists()


@pytest.mark.api
def test_another_persons_upload_is_a_404(alice_api: APIClient, mallory_api: APIClient) -> None:
    upload_id = upload(alice_api)
    assert mallory_api.delete(f"/api/uploads/{upload_id}/").status_code == 404
    assert Upload.objects.filter(pk=upload_id).exists()


@pytest.mark.api
def test_an_upload_an_active_job_reads_is_kept(alice: User, alice_api: APIClient) -> None:
    upload_id = upload(alice_api)
    job = make_job(alice, "wordcount", upload=upload_id, chunks=1)
    response = alice_api.delete(f"/api/uploads/{upload_id}/")
    assert response.status_code == 409
    assert "active job" in response.json()["detail"]
    # One 409 shape everywhere (jobs.protocol.ConflictBody): `status` as jobs' 409s have it.
    assert response.json()["status"] == [response.json()["detail"]]
    assert alice_api.get("/api/uploads/").json()["results"][0]["jobs"] == 1
    services.job_cancel(job=job)
    assert alice_api.delete(f"/api/uploads/{upload_id}/").status_code == 204


@pytest.mark.pages
def test_the_uploads_page_lists_and_deletes(
    alice_client: Client, alice_api: APIClient, mallory_client: Client
) -> None:
    upload_id = upload(alice_api, "notes.txt")
    page = alice_client.get("/uploads/")
    assert page.status_code == 200
    assert "notes.txt" in page.content.decode()
    assert "of at most 100 files and 1.0\xa0GB" in page.content.decode()
    assert "notes.txt" not in mallory_client.get("/uploads/").content.decode()
    assert mallory_client.post(f"/uploads/{upload_id}/delete/").status_code == 404
    response = alice_client.post(f"/uploads/{upload_id}/delete/", follow=True)
    assert "deleted" in response.content.decode()
    assert not Upload.objects.exists()


@pytest.mark.pages
def test_the_uploads_page_says_why_an_upload_an_active_job_reads_is_kept(
    alice: User, alice_client: Client, alice_api: APIClient
) -> None:
    upload_id = upload(alice_api, "notes.txt")
    make_job(alice, "wordcount", upload=upload_id, chunks=1)
    response = alice_client.post(f"/uploads/{upload_id}/delete/", follow=True)
    assert "is read by an active job; cancel it first." in response.content.decode()
    assert Upload.objects.filter(pk=upload_id).exists()


@pytest.mark.services
def test_files_nothing_references_are_pruned(
    alice_api: APIClient, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    kept = upload(alice_api)
    kept_name = Upload.objects.get(pk=kept).file.name
    orphan = default_storage.save("uploads/2020/01/orphan.txt", ContentFile(b"left behind"))
    fresh = default_storage.save("results/2020/01/fresh.png", ContentFile(b"new"))
    old = 1_600_000_000
    for name in (kept_name, orphan):
        os.utime(default_storage.path(name), (old, old))
    assert media_prune() == [orphan]
    assert default_storage.exists(kept_name)
    assert default_storage.exists(fresh)
    call_command("prune_media", "--min-age", "0")
    assert not default_storage.exists(fresh)
