"""One's uploads through the API: list, delete, and the jobs that keep one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Upload
from tests.factories import make_job, upload

# Jobs are made here and never dispatched.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]


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
