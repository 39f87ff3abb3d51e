"""One's uploads on their page: listed and deleted."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from jobs.models import Upload
from tests.factories import make_job, upload

pytestmark = pytest.mark.django_db


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
@pytest.mark.usefixtures("dispatched")
def test_the_uploads_page_says_why_an_upload_an_active_job_reads_is_kept(
    alice: User, alice_client: Client, alice_api: APIClient
) -> None:
    upload_id = upload(alice_api, "notes.txt")
    make_job(alice, "wordcount", upload=upload_id, chunks=1)
    response = alice_client.post(f"/uploads/{upload_id}/delete/", follow=True)
    assert "is read by an active job; cancel it first." in response.content.decode()
    assert Upload.objects.filter(pk=upload_id).exists()


@pytest.mark.pages
def test_the_uploads_page_uploads_a_file_and_refuses_a_bad_one(alice_client: Client) -> None:
    page = alice_client.get("/uploads/").content.decode()
    assert 'enctype="multipart/form-data"' in page
    assert '<button type="submit">Upload</button>' in page
    sent = SimpleUploadedFile("poem.txt", b"the cat sat\n", content_type="text/plain")
    response = alice_client.post("/uploads/", {"file": sent}, follow=True)
    assert "Uploaded &#x27;poem.txt&#x27;." in response.content.decode()
    assert Upload.objects.get().name == "poem.txt"
    binary = SimpleUploadedFile("image.bin", b"\x89PNG\x00\x00")
    refused = alice_client.post("/uploads/", {"file": binary})
    assert refused.status_code == 400
    assert "The file looks binary" in refused.content.decode()
    assert Upload.objects.count() == 1
    missing = alice_client.post("/uploads/", {})
    assert missing.status_code == 400
    assert "This field is required." in missing.content.decode()
