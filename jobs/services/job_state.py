"""Saving a locked job and telling live pages about it: shared by every service module."""

from __future__ import annotations

import json
import traceback
from functools import partial

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from jobs import events, kinds, selectors
from jobs.models import Chunk, Job


def job_save(job: Job, fields: list[str]) -> None:
    """Save a job locked by select_for_update, bumping its version."""
    job.version += 1
    job.save(update_fields=[*fields, "version"])


def job_publish_after_commit(job: Job, chunks: list[Chunk] | None = None) -> None:
    """Publish the job's state (and some of its chunks') once the transaction commits."""
    job_state = selectors.job_as_dict(job)
    chunk_states = [selectors.chunk_as_dict(chunk) for chunk in chunks or []]
    transaction.on_commit(partial(events.job_changed, job_state, chunk_states))


def job_lock(job_id: int) -> Job | None:
    return Job.objects.select_for_update(of=("self",)).filter(pk=job_id).first()


COMBINE_FAILED = "combine failed"


def job_finish(job: Job) -> None:
    """Combine the finished chunks' results (all of them, or fewer on an early exit).

    The job must be locked; the caller saves it. Unstarted chunks are cancelled.
    """
    partials = list(
        job.chunks.filter(status=Chunk.Status.DONE)
        .order_by("index")
        .values_list("result", flat=True)
    )
    try:
        kind = kinds.get(job.kind)
        job.result = kind.combine(job.params, partials)
        json.dumps(job.result)
        produced = kind.result_file(job.params, partials)
        if produced is not None:
            job.result_file.save(produced.name, ContentFile(produced.data), save=False)
        job.status = Job.Status.SUCCEEDED
    except Exception:
        job.result = None
        job.status = Job.Status.FAILED
        job.error = f"{COMBINE_FAILED}:\n" + traceback.format_exc()
    job.finished_at = timezone.now()
    chunks_cancel_unstarted(job)
    if job.study_id is not None:
        transaction.on_commit(partial(_study_advance_after_run, job.study_id))


def _study_advance_after_run(study_id: int) -> None:
    # Imported here: the studies service creates jobs, whose modules import this one.
    from jobs.services.studies import study_advance_after_run

    study_advance_after_run(study_id)


def chunks_cancel_unstarted(job: Job) -> None:
    """Chunks nobody has claimed will not run: the job has ended."""
    job.chunks.filter(status__in=(Chunk.Status.PENDING, Chunk.Status.QUEUED)).update(
        status=Chunk.Status.CANCELLED, finished_at=timezone.now(), retry_at=None
    )
