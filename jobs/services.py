"""Every write and state transition of jobs and chunks.

Chunks run at least once (Celery acks late and requeues on a lost worker) but are
accounted exactly once: each transition is a conditional update, so a chunk that
completes twice moves the job's counters once, and only the transaction that sees the
last completion (under the job's row lock) runs `combine`.
"""

from __future__ import annotations

import codecs
import json
import os
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs import cluster, events, kinds, quotas, selectors
from jobs.kinds.base import Params, Spec
from jobs.models import Chunk, Job, Upload


class JobRejected(ValueError):
    """Invalid job input. `errors` is JSON by field; `params` errors are keyed by parameter."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


class ChunkCancelled(Exception):
    """Raised from a progress call when the chunk's job is no longer running."""


class ChunkFailed(Exception):
    """A chunk's `run` raised; carries the formatted traceback."""

    def __init__(self, error: str) -> None:
        super().__init__(error.strip().splitlines()[-1] if error.strip() else "chunk failed")
        self.error = error


# --- creating and dispatching ----------------------------------------------------------------


@dataclass(frozen=True)
class JobPlan:
    """A validated job, not stored yet: what `job_create` would store."""

    kind: str
    params: Params
    specs: list[Spec]
    parallelism: int


def job_plan(
    *, owner: Any, kind: str, params: Mapping[str, Any], parallelism: int | None = None
) -> JobPlan:
    """Validate a job's input and split it into chunk specs, writing nothing.

    Raises JobRejected naming the field (`kind`, `parallelism`, or `params` by parameter).
    Upload ids are resolved (and their ownership checked) as for a real job, so a preview
    and a creation reject the same input with the same errors.
    """
    try:
        spec = kinds.get(kind)
    except kinds.UnknownKind:
        names = ", ".join(k.name for k in kinds.all_kinds())
        raise JobRejected({"kind": [f"Unknown kind {kind!r}; choose one of: {names}."]}) from None
    limit = settings.COREBOARD_MAX_PARALLELISM
    if parallelism is None:
        parallelism = min(settings.COREBOARD_DEFAULT_PARALLELISM, limit)
    elif isinstance(parallelism, bool) or not isinstance(parallelism, int):
        raise JobRejected({"parallelism": ["Must be an integer."]})
    elif not 1 <= parallelism <= limit:
        raise JobRejected({"parallelism": [f"Must be between 1 and {limit}."]})
    try:
        clean = _uploads_resolve(owner=owner, kind=spec, params=spec.clean_params(params))
        specs = list(spec.split(clean))
    except ValidationError as exc:
        raise JobRejected({"params": exc.message_dict}) from None
    if over := quotas.job_quota_errors(owner=owner, kind=spec, params=clean, chunks=len(specs)):
        raise JobRejected(over)
    return JobPlan(kind=kind, params=clean, specs=specs, parallelism=parallelism)


def job_create(
    *,
    owner: Any,
    kind: str,
    params: Mapping[str, Any],
    parallelism: int | None = None,
    rerun_of: Job | None = None,
) -> Job:
    """Validate, store the job and its chunks, and dispatch the first window after commit.

    Raises JobRejected naming the field (`kind`, `parallelism`, or `params` by parameter);
    nothing is stored or queued then.
    """
    plan = job_plan(owner=owner, kind=kind, params=params, parallelism=parallelism)
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner,
            kind=plan.kind,
            params=plan.params,
            parallelism=plan.parallelism,
            total_chunks=len(plan.specs),
            rerun_of=rerun_of,
        )
        Chunk.objects.bulk_create(
            (Chunk(job=job, index=i, spec=s) for i, s in enumerate(plan.specs)), batch_size=1000
        )
        transaction.on_commit(partial(job_dispatch, job_id=job.pk))
    return job


def _uploads_resolve(*, owner: Any, kind: kinds.JobKind, params: Params) -> Params:
    """Swap upload ids for what a kind needs to read the file, if the owner may."""
    resolved = dict(params)
    for name in kind.upload_fields():
        upload = Upload.objects.filter(pk=params[name], owner=owner).first()
        if upload is None:
            raise ValidationError(
                {name: f"No upload with id {params[name]}; upload the file first."}
            )
        resolved[name] = {
            "id": upload.pk,
            "name": upload.name,
            "size": upload.size,
            "storage_name": upload.file.name,
        }
    return resolved


def job_dispatch(*, job_id: int) -> None:
    """Start a pending job: queue its first window of chunks."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not job.is_active:
            return
        if job.status == Job.Status.PENDING:
            job.status = Job.Status.RUNNING
            job.started_at = timezone.now()
            _job_save(job, ["status", "started_at"])
            _publish_after_commit(job)
        _dispatch_window(job)


def _dispatch_window(job: Job) -> None:
    """Queue pending chunks until `parallelism` chunks are in flight; the job must be locked."""
    from jobs import tasks

    in_flight = job.chunks.filter(status__in=Chunk.IN_FLIGHT_STATUSES).count()
    slots = job.parallelism - in_flight
    if slots <= 0:
        return
    chunk_ids = list(
        job.chunks.filter(status=Chunk.Status.PENDING)
        .order_by("index")
        .values_list("id", flat=True)[:slots]
    )
    if not chunk_ids:
        return
    Chunk.objects.filter(id__in=chunk_ids).update(
        status=Chunk.Status.QUEUED, queued_at=timezone.now()
    )
    for chunk_id in chunk_ids:
        transaction.on_commit(partial(tasks.chunk_run.delay, chunk_id))


def _job_save(job: Job, fields: list[str]) -> None:
    """Save a job locked by select_for_update, bumping its version."""
    job.version += 1
    job.save(update_fields=[*fields, "version"])


def _publish_after_commit(job: Job, chunk: Chunk | None = None) -> None:
    job_state = selectors.job_as_dict(job)
    chunk_state = selectors.chunk_as_dict(chunk) if chunk is not None else None
    transaction.on_commit(partial(events.job_changed, job_state, chunk_state))


# --- running one chunk (in a worker process) --------------------------------------------------


class ChunkProgress:
    """The `progress(done, total)` callable handed to a kind's `run`.

    Publishes at most every COREBOARD_PROGRESS_INTERVAL_SECONDS and looks at the job's
    status at most every COREBOARD_CANCEL_POLL_SECONDS, raising ChunkCancelled once the
    job is no longer running: cancellation lives in the database, not in Celery revokes.
    """

    def __init__(self, chunk: Chunk) -> None:
        self.job_id = chunk.job_id
        self.index = chunk.index
        self._next_publish = 0.0
        self._next_check = time.monotonic() + settings.COREBOARD_CANCEL_POLL_SECONDS

    def __call__(self, done: float, total: float) -> None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + settings.COREBOARD_CANCEL_POLL_SECONDS
            status = Job.objects.filter(pk=self.job_id).values_list("status", flat=True).first()
            if status != Job.Status.RUNNING:
                raise ChunkCancelled
        if now >= self._next_publish:
            self._next_publish = now + settings.COREBOARD_PROGRESS_INTERVAL_SECONDS
            fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
            events.chunk_progressed(self.job_id, self.index, fraction)


def chunk_start(*, chunk_id: int, worker: str, pid: int) -> Chunk | None:
    """Claim a delivered chunk; None if it must not run (cancelled, done, job over)."""
    with transaction.atomic():
        chunk = (
            Chunk.objects.select_for_update(of=("self",))
            .select_related("job")
            .filter(pk=chunk_id)
            .first()
        )
        if chunk is None or chunk.status not in Chunk.IN_FLIGHT_STATUSES:
            return None
        if chunk.job.status != Job.Status.RUNNING:
            return None
        if chunk.attempts >= settings.COREBOARD_CHUNK_MAX_ATTEMPTS:
            error = (
                f"Chunk {chunk.index} was delivered {chunk.attempts} times without finishing "
                "(its worker process was lost each time); giving up."
            )
            transaction.on_commit(partial(chunk_fail, chunk_id=chunk_id, error=error))
            return None
        chunk.status = Chunk.Status.RUNNING
        chunk.attempts += 1
        chunk.started_at = timezone.now()
        chunk.finished_at = None
        chunk.worker = worker
        chunk.pid = pid
        chunk.save(
            update_fields=["status", "attempts", "started_at", "finished_at", "worker", "pid"]
        )
        _publish_after_commit(chunk.job, chunk)
    return chunk


def chunk_run(*, chunk_id: int) -> None:
    """Run one chunk in this process and record the outcome.

    Raises ChunkFailed when the kind raised, so the Celery task can retry or give up.
    """
    chunk = chunk_start(chunk_id=chunk_id, worker=socket.gethostname(), pid=os.getpid())
    if chunk is None:
        return
    cluster.process_running(chunk.job_id, chunk.index)
    try:
        _chunk_execute(chunk)
    finally:
        cluster.process_idle()


def _chunk_execute(chunk: Chunk) -> None:
    chunk_id = chunk.pk
    cpu_before = time.process_time()
    try:
        kind = kinds.get(chunk.job.kind)
        result = kind.run(chunk.spec, ChunkProgress(chunk))
        json.dumps(result)
    except ChunkCancelled:
        chunk_cancel(chunk_id=chunk_id)
        return
    except kinds.UnknownKind:
        raise ChunkFailed(
            f"Job kind {chunk.job.kind!r} is not installed on worker {socket.gethostname()}; "
            "add its module to COREBOARD_JOB_KINDS there."
        ) from None
    except Exception:
        raise ChunkFailed(traceback.format_exc()) from None
    chunk_complete(chunk_id=chunk_id, result=result, cpu_seconds=time.process_time() - cpu_before)
    cluster.chunk_finished()


def chunk_complete(*, chunk_id: int, result: Any, cpu_seconds: float) -> None:
    """Record a chunk's result; the completion that finishes the job runs `combine`."""
    with transaction.atomic():
        chunk = _chunk_settle(
            chunk_id, Chunk.Status.DONE, result=result, cpu_seconds=cpu_seconds, error=""
        )
        if chunk is None:
            return
        job = chunk.job
        job.done_chunks += 1
        job.cpu_seconds += cpu_seconds
        fields = ["done_chunks", "cpu_seconds"]
        if job.status == Job.Status.RUNNING and (
            job.done_chunks == job.total_chunks or kinds.get(job.kind).finishes_job(result)
        ):
            _job_finish(job)
            fields += ["status", "result", "result_file", "error", "finished_at"]
            _chunks_cancel_unstarted(job)
        _job_save(job, fields)
        if job.status == Job.Status.RUNNING:
            _dispatch_window(job)
        _publish_after_commit(job, chunk)


def _chunk_settle(chunk_id: int, status: str, **fields: Any) -> Chunk | None:
    """Move an in-flight chunk to a final `status` under its job's lock; None if it is not
    in flight any more. A redelivered chunk may finish twice: only the first one counts."""
    chunk = _chunk_lock_with_job(chunk_id)
    if chunk is None or chunk.status not in Chunk.IN_FLIGHT_STATUSES:
        return None
    chunk.status = status
    chunk.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(chunk, name, value)
    chunk.save(update_fields=["status", "finished_at", *fields])
    return chunk


def _chunk_lock_with_job(chunk_id: int) -> Chunk | None:
    """Lock a chunk's job, then the chunk: writers of a job's counters hold both.

    Always the job first, as dispatch, cancel and retry do (they lock the job, then update
    its chunks): one order everywhere means no deadlocks between them.
    """
    job = Job.objects.select_for_update(of=("self",)).filter(chunks__pk=chunk_id).first()
    if job is None:
        return None
    chunk = Chunk.objects.select_for_update().filter(pk=chunk_id).first()
    if chunk is not None:
        chunk.job = job
    return chunk


def _job_finish(job: Job) -> None:
    """Combine the finished chunks' results (all of them, or fewer on an early exit)."""
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
        job.error = "combine failed:\n" + traceback.format_exc()
    job.finished_at = timezone.now()


def chunk_retry_scheduled(*, chunk_id: int, error: str) -> None:
    """A chunk raised and will be retried: back to queued, keeping its slot and its error."""
    with transaction.atomic():
        updated = Chunk.objects.filter(pk=chunk_id, status=Chunk.Status.RUNNING).update(
            status=Chunk.Status.QUEUED, error=error, finished_at=timezone.now()
        )
        if updated:
            chunk = Chunk.objects.select_related("job").get(pk=chunk_id)
            _publish_after_commit(chunk.job, chunk)


def chunk_fail(*, chunk_id: int, error: str) -> None:
    """A chunk ran out of attempts: it fails, and so does its job."""
    with transaction.atomic():
        chunk = _chunk_settle(chunk_id, Chunk.Status.FAILED, error=error)
        if chunk is None:
            return
        job = chunk.job
        job.failed_chunks += 1
        fields = ["failed_chunks"]
        if job.is_active:
            job.status = Job.Status.FAILED
            job.error = f"Chunk {chunk.index} failed after {chunk.attempts} attempt(s):\n{error}"
            job.finished_at = timezone.now()
            fields += ["status", "error", "finished_at"]
            _chunks_cancel_unstarted(job)
        _job_save(job, fields)
        _publish_after_commit(job, chunk)


def chunk_cancel(*, chunk_id: int) -> None:
    """A running chunk noticed its job stopped and gave up.

    Only while the job is still stopped: if it was retried meanwhile, the chunk belongs to
    the new run and must stay as that run left it.
    """
    with transaction.atomic():
        updated = (
            Chunk.objects.filter(pk=chunk_id, status=Chunk.Status.RUNNING)
            .exclude(job__status=Job.Status.RUNNING)
            .update(status=Chunk.Status.CANCELLED, finished_at=timezone.now())
        )
        if updated:
            chunk = Chunk.objects.select_related("job").get(pk=chunk_id)
            _publish_after_commit(chunk.job, chunk)


def _chunks_cancel_unstarted(job: Job) -> None:
    job.chunks.filter(status__in=(Chunk.Status.PENDING, Chunk.Status.QUEUED)).update(
        status=Chunk.Status.CANCELLED, finished_at=timezone.now()
    )


# --- actions by people -------------------------------------------------------------------------


def job_cancel(*, job: Job) -> bool:
    """Cancel an active job. Queued chunks will not start; running ones stop at their next
    progress call. Returns False if the job had already ended."""
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now(), version=F("version") + 1
        )
        if not updated:
            return False
        job.refresh_from_db()
        _chunks_cancel_unstarted(job)
        _publish_after_commit(job)
    return True


def job_retry_failed(*, job: Job) -> bool:
    """Run a failed job's unfinished chunks again; False if there is nothing to retry.

    Only a job that ended `failed` with at least one failed chunk qualifies. A cancelled job
    does not: somebody stopped it on purpose, and "run again" starts it afresh. A job whose
    `combine` failed has no failed chunk, and running its done chunks again would not help.

    Every chunk not done goes back to pending (the failed ones, the ones cancelled when the
    job failed, and any the ended run still shows queued or running), so only the missing
    work runs; done chunks keep their results and `done_chunks` and `cpu_seconds` keep
    counting them. Accounting stays exactly-once because counters move only when a chunk
    leaves queued/running under its row lock: a message of the old run still in the broker
    finds its chunk pending and does nothing (`chunk_start` claims only queued/running
    chunks), and one that arrives after the chunk was queued again at worst runs it twice,
    the second completion finding it done.

    Attempts start again from zero: `chunk_start` gives up on a chunk after
    COREBOARD_CHUNK_MAX_ATTEMPTS deliveries (meant for chunks that keep killing their
    worker), so carrying the old count over would fail a retried chunk after a delivery or
    two, blaming lost workers. Each chunk keeps its last error until it runs again.
    `started_at` is kept, so wall time (and speedup) covers the whole job, pause included.
    """
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None or locked.status != Job.Status.FAILED:
            return False
        if not locked.chunks.filter(status=Chunk.Status.FAILED).exists():
            return False
        locked.chunks.exclude(status=Chunk.Status.DONE).update(
            status=Chunk.Status.PENDING,
            attempts=0,
            queued_at=None,
            started_at=None,
            finished_at=None,
        )
        locked.status = Job.Status.RUNNING
        locked.failed_chunks = 0
        locked.finished_at = None
        locked.error = ""
        locked.result = None
        _job_save(locked, ["status", "failed_chunks", "finished_at", "error", "result"])
        _dispatch_window(locked)
        _publish_after_commit(locked)
    job.refresh_from_db()
    return True


def job_rerun(*, job: Job, owner: Any) -> Job:
    """Create a new job with `job`'s kind, parameters and parallelism, owned by `owner`.

    Validated afresh like any new job (JobRejected by field): an upload must still exist and
    belong to `owner`, and the parallelism must be within today's limit.
    """
    return job_create(
        owner=owner,
        kind=job.kind,
        params=selectors.job_rerun_params(job),
        parallelism=job.parallelism,
        rerun_of=job,
    )


def job_delete(*, job: Job) -> bool:
    """Delete an ended job, its chunks and its result file; False while the job is active.

    An active job is refused rather than cancelled on the way: deleting cannot be undone,
    so stopping the work stays a separate, visible step. Uploads the job read are kept
    (they belong to their owner, and reruns may read them); reruns of the job stay, with
    `rerun_of` cleared. The result file goes after commit, so a rollback keeps it.
    """
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None:
            return True
        if locked.is_active:
            return False
        if locked.result_file:
            storage, name = locked.result_file.storage, locked.result_file.name
            transaction.on_commit(partial(storage.delete, name))
        locked.delete()
    return True


# --- uploads -------------------------------------------------------------------------------------


def upload_create(*, owner: Any, file: UploadedFile) -> Upload:
    """Store an uploaded UTF-8 text file for a job to read.

    Raises ValidationError on the `file` field (empty, too large, binary or not UTF-8);
    nothing is stored then.
    """
    limit = settings.COREBOARD_UPLOAD_MAX_BYTES
    if not file.size:
        raise ValidationError({"file": "The file is empty."})
    if file.size > limit:
        raise ValidationError({"file": f"The file is larger than the limit of {limit:,} bytes."})
    if over := quotas.upload_quota_error(owner=owner, size=file.size):
        raise ValidationError({"file": over})
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for piece in file.chunks():
            if b"\x00" in piece:
                raise ValidationError({"file": "The file looks binary (it contains NUL bytes)."})
            decoder.decode(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise ValidationError(
            {"file": f"The file is not valid UTF-8 text ({error.reason})."}
        ) from None
    file.seek(0)
    name = (file.name or "upload.txt")[-255:]
    upload = Upload(owner=owner, name=name, size=file.size)
    upload.file.save(name, file, save=False)
    upload.save()
    return upload
