"""Uploads: storing one within the quota, deleting one's own, clearing stored files nothing
references.

The quota (COREBOARD_QUOTA_UPLOADS, COREBOARD_QUOTA_UPLOAD_BYTES) is checked and taken
atomically: under a per-owner advisory lock an upload counts what is stored and being
written and inserts a reservation of its size, then writes its file outside any
transaction; storing the Upload row deletes the reservation in the same transaction,
under the same lock (so a count never falls between the two), and a failed write
deletes it. Parallel uploads by one person therefore never store more than
the quota, and no transaction stays open while a large file is written.
"""

from __future__ import annotations

import codecs
import time
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs import kinds, protocol
from jobs.models import Job, Upload, UploadReservation
from jobs.services import quotas
from jobs.services.errors import Conflict, Rejected

# Directories (under MEDIA_ROOT) whose files belong to an Upload or a Job row.
STORED_DIRS = ("uploads", "results")
# A file younger than this may belong to a row not committed yet.
PRUNE_MIN_AGE_S = 3600
# Advisory lock key of one owner's upload quota: "UQ" in the top 16 bits, then the owner's
# id (the same layout as jobs.services.exports' keys; pg_locks shows classid and objid).
_UPLOAD_QUOTA_LOCK = 0x5551 << 48


def upload_create(*, owner: Any, file: UploadedFile) -> Upload:
    """Store an uploaded UTF-8 text file for a job to read.

    Raises Rejected on the `file` field (empty, too large, over the quota, binary, not
    UTF-8); nothing is stored then and the quota is as it was.
    """
    limit = settings.COREBOARD_UPLOAD_MAX_BYTES
    if not file.size:
        raise Rejected({"file": ["The file is empty."]})
    if file.size > limit:
        raise Rejected({"file": [f"The file is larger than the limit of {limit:,} bytes."]})
    reservation = _upload_reserve(owner=owner, size=file.size)
    stored_name = ""
    try:
        _utf8_check(file)
        name = (file.name or "upload.txt")[-255:]
        upload = Upload(owner=owner, name=name, size=file.size)
        upload.file.save(name, file, save=False)
        stored_name = upload.file.name
        with transaction.atomic():
            # Under the lock too: a count between the two would see neither the row nor
            # the reservation (its two aggregates are two statements, two snapshots).
            _owner_lock(owner)
            upload.save()
            reservation.delete()
    except BaseException:
        UploadReservation.objects.filter(pk=reservation.pk).delete()
        if stored_name:
            default_storage.delete(stored_name)
        raise
    return upload


def _upload_reserve(*, owner: Any, size: int) -> UploadReservation:
    """Check the owner's upload quota and take `size` bytes of it, atomically (Rejected when
    over): parallel uploads by one person queue on the lock for the count and the insert."""
    with transaction.atomic():
        _owner_lock(owner)
        if over := quotas.upload_quota_error(owner=owner, size=size):
            raise Rejected({"file": [over]})
        return UploadReservation.objects.create(owner=owner, size=size)


def _owner_lock(owner: Any) -> None:
    """Hold the owner's upload-quota lock until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_UPLOAD_QUOTA_LOCK | owner.pk])


def _utf8_check(file: UploadedFile) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for piece in file.chunks():
            if b"\x00" in piece:
                raise Rejected({"file": ["The file looks binary (it contains NUL bytes)."]})
            decoder.decode(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise Rejected({"file": [f"The file is not valid UTF-8 text ({error.reason})."]}) from None
    file.seek(0)


def jobs_reading(upload_id: int) -> QuerySet[Job]:
    """Jobs whose parameters name the upload (through any kind's upload field)."""
    names = {name for kind in kinds.all_kinds() for name in kind.upload_fields()}
    match = Q(pk__in=[])
    for name in names:
        match |= Q(**{f"params__{name}": upload_id})
    return Job.objects.filter(match)


def upload_delete(*, upload: Upload) -> None:
    """Delete an upload and its file; Conflict (nothing deleted) while an active job reads it.

    Ended jobs that read it keep their results; running them again then asks for a file.
    """
    with transaction.atomic():
        locked = Upload.objects.select_for_update().filter(pk=upload.pk).first()
        if locked is None:
            return
        if jobs_reading(locked.pk).filter(status__in=Job.ACTIVE_STATUSES).exists():
            raise Conflict(
                f"Upload {locked.pk} ({locked.name!r}) is read by an active job; cancel it first."
            )
        storage, name = locked.file.storage, locked.file.name
        locked.delete()
        transaction.on_commit(partial(storage.delete, name))


def media_prune(*, min_age_s: float = PRUNE_MIN_AGE_S) -> list[str]:
    """Delete stored upload and result files that no Upload or Job row references (left
    by a crash between storing a file and committing its row, or by older versions).
    Returns the storage names deleted. Reservations left by such a crash go too."""
    UploadReservation.objects.filter(
        created_at__lt=timezone.now() - quotas.UPLOAD_RESERVATION_TTL
    ).delete()
    referenced = set(Upload.objects.values_list("file", flat=True))
    referenced |= set(Job.objects.exclude(result_file="").values_list("result_file", flat=True))
    root = Path(default_storage.path(""))
    deleted: list[str] = []
    cutoff = time.time() - min_age_s
    for top in STORED_DIRS:
        for path in sorted((root / top).rglob("*")):
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            name = path.relative_to(root).as_posix()
            if name not in referenced:
                default_storage.delete(name)
                deleted.append(name)
    return deleted


def upload_list_item(upload: Upload) -> protocol.UploadListItemState:
    return protocol.upload_list_item_state(upload, jobs=jobs_reading(upload.pk).count())
