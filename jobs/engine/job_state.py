"""Saving a locked job and telling live pages about it: shared by every service module."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import psycopg.errors
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import OperationalError, transaction
from django.utils import timezone

from jobs import kinds, protocol
from jobs.engine import events, signals
from jobs.engine.culprits import json_text, kind_traceback, not_json_message
from jobs.models import Chunk, Job

logger = logging.getLogger(__name__)
T = TypeVar("T")


def is_lock_timeout(error: BaseException) -> bool:
    """True for a statement PostgreSQL cancelled after `lock_timeout` (see settings)."""
    return isinstance(error, OperationalError) and isinstance(
        error.__cause__, psycopg.errors.LockNotAvailable
    )


def retry_on_lock_timeout(work: Callable[[], T], *, patience_s: float | None = None) -> T:
    """Run `work` (one whole transaction) again while it times out waiting for a lock.

    A lock is only held for long by a session that stopped answering (a machine lost or
    partitioned mid-transaction); PostgreSQL ends such a session after
    COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS. Waiting in short lock_timeout steps
    rather than on the lock itself keeps the caller in charge: after `patience_s` (by
    default that idle timeout plus one lock wait) the last error is raised.
    """
    if patience_s is None:
        patience_s = (
            settings.COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS
            + settings.COREBOARD_DB_LOCK_TIMEOUT_MS
        ) / 1000
    deadline = time.monotonic() + patience_s
    pause = 0.05
    while True:
        try:
            return work()
        except OperationalError as error:
            if not is_lock_timeout(error) or time.monotonic() + pause >= deadline:
                raise
            logger.warning("waited too long for a lock (%s); trying again", error)
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def job_save(job: Job, fields: list[str]) -> None:
    """Save a job locked by select_for_update, bumping its version."""
    job.version += 1
    job.save(update_fields=[*fields, "version"])


def job_publish_after_commit(
    job: Job, chunks: list[Chunk] | None = None, *, recorded: list[int] | None = None
) -> None:
    """Publish the job's state (and some of its chunks') once the transaction commits;
    `recorded`: indices of chunks told done as they ended, now stored."""
    job_state = protocol.job_state(job)
    chunk_states = [protocol.chunk_state(chunk) for chunk in chunks or []]
    deltas = [protocol.chunk_recorded_delta(index) for index in recorded or []]
    transaction.on_commit(partial(events.job_changed, job_state, chunk_states, deltas))


def job_lock(job_id: int) -> Job | None:
    return Job.objects.select_for_update(of=("self",)).filter(pk=job_id).first()


COMBINE_FAILED = "combine failed"


class NotJSONResult(Exception):
    """A combined result that is not JSON (the message names the key path)."""


def job_finish(job: Job) -> None:
    """Combine the finished chunks' results (all of them, or fewer on an early exit).

    The job must be locked; the caller saves it. Unstarted chunks are cancelled.
    """
    job_combine(job)
    job_finished(job)


def job_combine(job: Job) -> None:
    """Set the job's result, result file, status and error from its done chunks' partial
    results; nothing is saved but the result file. Needs no lock: a job whose work is done
    has no more partials coming (jobs.engine.chunks.job_complete checks it did not change).
    """
    partials = list(
        job.chunks.filter(status=Chunk.Status.DONE)
        .order_by("index")
        .values_list("result", flat=True)
    )
    kind: kinds.JobKind | None = None
    try:
        kind = kinds.get(job.kind)
        result = kind.combine(job.params, partials)
        if json_text(result) is None:
            raise NotJSONResult(not_json_message(kind, result, what="the result", root="result"))
        job.result = result
        produced = kind.result_file(job.params, partials)
        if produced is not None:
            job.result_file.save(produced.name, ContentFile(produced.data), save=False)
        job.status = Job.Status.SUCCEEDED
    except NotJSONResult as error:
        job.result = None
        job.status = Job.Status.FAILED
        job.error = f"{COMBINE_FAILED}:\n{error}"
    except Exception as error:
        job.result = None
        job.status = Job.Status.FAILED
        shown = kind_traceback(kind, error) if kind is not None else traceback.format_exc()
        job.error = f"{COMBINE_FAILED}:\n{shown}"


def job_combine_discard(job: Job) -> None:
    """Drop what job_combine produced on a job that will not be saved (its result file)."""
    if job.result_file:
        try:
            job.result_file.delete(save=False)
        except OSError:
            logger.warning("could not delete %s", job.result_file.name, exc_info=True)


def job_finished(job: Job) -> None:
    """A combined job ends now (locked; the caller saves it): its unstarted chunks are
    cancelled, and who waits for it is told after the commit."""
    job.finished_at = timezone.now()
    chunks_cancel_unstarted(job)
    transaction.on_commit(
        partial(signals.job_finished.send, sender=Job, job_id=job.pk, study_id=job.study_id),
        robust=True,
    )


def chunks_cancel_unstarted(job: Job) -> None:
    """Chunks nobody has claimed will not run: the job has ended."""
    job.chunks.filter(status=Chunk.Status.PENDING).update(
        status=Chunk.Status.CANCELLED, finished_at=timezone.now(), retry_at=None
    )
