"""Uploads and results are written with private file modes."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from jobs.models import Upload

pytestmark = pytest.mark.django_db


@pytest.mark.services
def test_uploads_and_results_are_0640_in_private_directories(
    alice_api: APIClient, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    response = alice_api.post(
        "/api/uploads/", {"file": SimpleUploadedFile("a.txt", b"some words", "text/plain")}
    )
    assert response.status_code == 201
    path = Path(Upload.objects.get().file.path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o007 == 0
