"""Saving a locked job and telling live pages about it: shared by every service module."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import psycopg.errors
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import OperationalError, transaction
from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Value,
    When,
)
from django.utils import timezone

from jobs import kinds, protocol, scaling
from jobs.engine import events, notify, signals
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


# What job_finished may change besides the status, result and error: the caller saves these.
JOB_FINISHED_FIELDS = [
    "finished_at",
    "processes_used",
    "baseline_seconds",
    "baseline_job",
    "code_ran",
]


def job_finished(job: Job) -> None:
    """A combined job ends now (locked; the caller saves JOB_FINISHED_FIELDS): a succeeded
    one's figures are settled, its unstarted chunks are cancelled, and who waits for it is
    told after the commit."""
    job.finished_at = timezone.now()
    groups = _chunk_groups(job)
    job.code_ran = _code_ran(groups)
    if job.status == Job.Status.SUCCEEDED:
        job_figures_settle(job, groups=groups)
    chunks_cancel_unstarted(job)
    job_ended(job)
    transaction.on_commit(
        partial(signals.job_finished.send, sender=Job, job_id=job.pk, study_id=job.study_id),
        robust=True,
    )


def job_ended(job: Job) -> None:
    """Everything that happens in the transaction writing a job's final state (succeeded,
    failed, cancelled), whichever way it ended: its notifications' outbox rows (jobs.engine.
    notify), sent once it commits. Every writer of a final state calls this."""
    notify.job_ended(job)


@dataclass(frozen=True)
class _ChunkGroup:
    """The chunks of a job that ran, by process, code and outcome (one grouped read serves
    the code they ran and the processes that did them)."""

    worker: str
    pid: int | None
    kind_source: str
    coreboard_commit: str
    done: bool
    # Claimed at least once (what Job.code_ran counts).
    ran: bool
    chunks: int


def _chunk_groups(job: Job) -> list[_ChunkGroup]:
    rows = (
        job.chunks.filter(Q(attempts__gt=0) | Q(status=Chunk.Status.DONE))
        .annotate(ran=ExpressionWrapper(Q(attempts__gt=0), output_field=BooleanField()))
        .values("worker", "pid", "kind_source", "coreboard_commit", "status", "ran")
        .annotate(chunks=Count("id"))
        .order_by()
    )
    return [
        _ChunkGroup(
            row["worker"],
            row["pid"],
            row["kind_source"],
            row["coreboard_commit"],
            row["status"] == Chunk.Status.DONE,
            row["ran"],
            row["chunks"],
        )
        for row in rows
    ]


def _code_ran(groups: list[_ChunkGroup]) -> list[protocol.CodeRan]:
    """As jobs_code_ran_read, from groups already read."""
    counts: dict[tuple[str, str], int] = {}
    for group in groups:
        if group.ran:
            code = (group.kind_source, group.coreboard_commit)
            counts[code] = counts.get(code, 0) + group.chunks
    return _code_ran_ordered(counts)


def _code_ran_ordered(counts: dict[tuple[str, str], int]) -> list[protocol.CodeRan]:
    """Chunks by (kind source, Coreboard commit) as Job.code_ran: most chunks first."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [
        {"kind_source": source, "coreboard_commit": commit, "chunks": chunks}
        for (source, commit), chunks in ordered
    ]


def jobs_code_ran_read(job_ids: Sequence[int]) -> dict[int, list[protocol.CodeRan]]:
    """For each job, the code its claimed chunks ran with last (one grouped read for all):
    what job_finished stores as Job.code_ran."""
    rows = (
        Chunk.objects.filter(job_id__in=job_ids, attempts__gt=0)
        .values_list("job_id", "kind_source", "coreboard_commit")
        .annotate(chunks=Count("id"))
        .order_by()
    )
    counts: dict[int, dict[tuple[str, str], int]] = {}
    for job_id, source, commit, chunks in rows:
        counts.setdefault(job_id, {})[(source, commit)] = chunks
    return {job_id: _code_ran_ordered(by_code) for job_id, by_code in counts.items()}


def chunks_cancel_unstarted(job: Job) -> None:
    """Chunks nobody has claimed will not run: the job has ended."""
    job.chunks.filter(status=Chunk.Status.PENDING).update(
        status=Chunk.Status.CANCELLED, finished_at=timezone.now(), retry_at=None
    )


def job_figures_settle(job: Job, *, groups: list[_ChunkGroup] | None = None) -> None:
    """Set a succeeded job's stored figures (nothing is saved; its finished_at is set):
    the processes that ran it (scaling.PROCESSES_USED) and its speedup's baseline.

    The baseline is the time one process would take: a parallelism-1 run is its own; any
    other job takes the wall time of its owner's parallelism-1 success of the same kind and
    parameters, its own study's first, else the latest; none leaves it null (the speedup is
    then against the chunks' CPU time). Only the owner's own runs count: another person's
    run would tell who ran what, and how long it took. A parallelism-1 run that succeeds
    later becomes the baseline of those without one (job_baseline_share, after commit).
    """
    if groups is None:
        groups = _chunk_groups(job)
    processes = len({(g.worker, g.pid) for g in groups if g.done and g.pid is not None})
    job.processes_used = scaling.job_processes_used(
        processes=processes, parallelism=job.parallelism
    )
    wall = job.wall_seconds
    if job.parallelism == 1 and wall:
        job.baseline_seconds, job.baseline_job = wall, job
        transaction.on_commit(partial(job_baseline_share, job_id=job.pk), robust=True)
        return
    order: list[Any] = [F("finished_at").desc(), "-id"]
    if job.study_id is not None:
        own_study = When(study_id=job.study_id, then=Value(0))
        order.insert(0, Case(own_study, default=Value(1), output_field=IntegerField()))
    runs = (
        Job.objects.filter(
            owner_id=job.owner_id,
            kind=job.kind,
            params=job.params,
            parallelism=1,
            status=Job.Status.SUCCEEDED,
            finished_wall_seconds__gt=0,
        )
        .exclude(pk=job.pk)
        .order_by(*order)
        .only("pk", "finished_wall_seconds")
    )
    run = runs.first()
    job.baseline_seconds = run.finished_wall_seconds if run is not None else None
    job.baseline_job = run


def job_baseline_share(*, job_id: int) -> int:
    """A parallelism-1 run that succeeded is the baseline of its owner's succeeded jobs of
    the same kind and parameters that had none (measured beats estimated); a baseline once
    measured stays, so a job's figure does not move with every later run. Returns how many
    jobs took it."""
    run = Job.objects.filter(
        pk=job_id, status=Job.Status.SUCCEEDED, parallelism=1, finished_wall_seconds__gt=0
    ).first()
    if run is None:
        return 0
    return (
        Job.objects.filter(
            owner_id=run.owner_id,
            kind=run.kind,
            params=run.params,
            status=Job.Status.SUCCEEDED,
            baseline_seconds__isnull=True,
        )
        .exclude(parallelism=1)
        .update(
            baseline_seconds=run.finished_wall_seconds,
            baseline_job=run,
            version=F("version") + 1,
        )
    )
