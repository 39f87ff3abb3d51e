"""Pruning the media files nothing references (jobs.services.uploads.media_prune)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from rest_framework.test import APIClient

from jobs.models import Upload
from jobs.services.uploads import media_prune
from tests.factories import upload

pytestmark = pytest.mark.django_db


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
