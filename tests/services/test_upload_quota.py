"""The upload quota is reserved, then written (jobs.services.uploads): parallel uploads by one
person, each on its own database connection, never store more than the quota."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Sum

from jobs import services
from jobs.models import Upload, UploadReservation
from jobs.services import uploads

pytestmark = pytest.mark.services

PARALLEL = 12
SIZE = 1000


def text_file(size: int = SIZE, name: str = "part.txt") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"w " * (size // 2), content_type="text/plain")


def upload_in_parallel(owner: User, attempts: int) -> list[str]:
    """`attempts` uploads at once, each in its own thread (so its own PostgreSQL session);
    the outcome of each: "stored" or the refusal's message."""
    start = threading.Barrier(attempts)

    def attempt(_: int) -> str:
        try:
            start.wait()
            services.upload_create(owner=owner, file=text_file())
            return "stored"
        except services.Rejected as rejected:
            return str(rejected.errors["file"][0])
        finally:
            connection.close()

    with ThreadPoolExecutor(attempts) as pool:
        return list(pool.map(attempt, range(attempts)))


@pytest.mark.django_db(transaction=True)
def test_parallel_uploads_never_store_more_bytes_than_the_quota(alice: User, settings: Any) -> None:
    settings.COREBOARD_QUOTA_UPLOAD_BYTES = 5 * SIZE + SIZE // 2
    outcomes = upload_in_parallel(alice, PARALLEL)
    assert outcomes.count("stored") == 5
    refusals = [outcome for outcome in outcomes if outcome != "stored"]
    assert all("COREBOARD_QUOTA_UPLOAD_BYTES" in refusal for refusal in refusals)
    assert Upload.objects.filter(owner=alice).aggregate(size=Sum("size"))["size"] == 5 * SIZE
    assert not UploadReservation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_parallel_uploads_never_store_more_files_than_the_quota(
    alice: User, bob: User, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_UPLOADS = 3
    services.upload_create(owner=bob, file=text_file())  # another person's do not count
    outcomes = upload_in_parallel(alice, PARALLEL)
    assert outcomes.count("stored") == 3
    assert all("COREBOARD_QUOTA_UPLOADS" in o for o in outcomes if o != "stored")
    assert Upload.objects.filter(owner=alice).count() == 3


def test_an_upload_being_written_counts_against_the_quota(alice: User, settings: Any) -> None:
    settings.COREBOARD_QUOTA_UPLOAD_BYTES = 2 * SIZE
    UploadReservation.objects.create(owner=alice, size=SIZE + 1)
    with pytest.raises(services.Rejected) as caught:
        services.upload_create(owner=alice, file=text_file())
    assert "take 1,001 bytes and this one 1,000" in caught.value.errors["file"][0]


def test_a_refused_upload_gives_its_reservation_back(alice: User, settings: Any) -> None:
    settings.COREBOARD_QUOTA_UPLOAD_BYTES = SIZE
    with pytest.raises(services.Rejected, match="UTF-8"):
        services.upload_create(owner=alice, file=SimpleUploadedFile("l.txt", b"caf\xe9" * 200))
    assert not UploadReservation.objects.exists()
    assert services.upload_create(owner=alice, file=text_file()).size == SIZE


def test_a_failed_write_gives_its_reservation_back(
    alice: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.COREBOARD_QUOTA_UPLOAD_BYTES = SIZE

    def disk_full(*args: Any, **kwargs: Any) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(FileSystemStorage, "_save", disk_full)
    with pytest.raises(OSError, match="disk full"):
        services.upload_create(owner=alice, file=text_file())
    assert not Upload.objects.exists()
    assert not UploadReservation.objects.exists()
    monkeypatch.undo()
    assert services.upload_create(owner=alice, file=text_file()).size == SIZE


def test_a_reservation_left_by_a_crash_expires_and_is_pruned(alice: User, settings: Any) -> None:
    settings.COREBOARD_QUOTA_UPLOAD_BYTES = SIZE
    left = UploadReservation.objects.create(owner=alice, size=SIZE)
    with pytest.raises(services.Rejected):
        services.upload_create(owner=alice, file=text_file())
    UploadReservation.objects.filter(pk=left.pk).update(
        created_at=left.created_at - timedelta(hours=2)
    )
    services.upload_create(owner=alice, file=text_file())
    uploads.media_prune(min_age_s=3600)
    assert not UploadReservation.objects.filter(pk=left.pk).exists()
