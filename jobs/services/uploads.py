"""Uploads: deleting one's own, and clearing stored files nothing references.

Writes, like the services (its own module while the services become a package).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet

from jobs import kinds, protocol
from jobs.models import Job, Upload
from jobs.services.errors import Conflict

# Directories (under MEDIA_ROOT) whose files belong to an Upload or a Job row.
STORED_DIRS = ("uploads", "results")
# A file younger than this may belong to a row not committed yet.
PRUNE_MIN_AGE_S = 3600


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
    Returns the storage names deleted."""
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
