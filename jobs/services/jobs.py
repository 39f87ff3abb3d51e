"""What people do to jobs: create, cancel, retry failed chunks, run again, delete."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs import kinds, options
from jobs.engine import dispatch, workers
from jobs.engine.job_state import (
    COMBINE_FAILED,
    chunks_cancel_unstarted,
    job_ended,
    job_publish_after_commit,
    job_save,
)
from jobs.kinds.base import Params, Spec, json_type_error
from jobs.models import Chunk, Job, ScalingStudy, Schedule, Sweep, Upload, priority_name
from jobs.options import chunk_time_limit_field, parallelism_field
from jobs.services import admission, quotas, splitting
from jobs.services.errors import Conflict, Rejected

# --- creating ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobPlan:
    """A validated job, not stored yet: what `job_create` would store."""

    kind: str
    params: Params
    specs: list[Spec]
    # Most worker processes the job uses at once; Job.ALL_PROCESSES (0): every live one with
    # its kind, counted afresh while it runs.
    parallelism: int
    # What admitting it counts against the quotas (its estimated CPU seconds).
    cost: quotas.Cost
    # Seconds one chunk may run (None: its kind's limit).
    chunk_time_limit_s: int | None = None
    # Which waiting work the workers take first (Job.Priority).
    priority: int = Job.Priority.NORMAL


def job_plan(
    *,
    owner: Any,
    kind: str,
    params: Mapping[str, Any],
    parallelism: int | None = None,
    chunk_time_limit_s: int | None = None,
    priority: Any = None,
) -> JobPlan:
    """Validate a job's input, split it into chunk specs and estimate its cost, writing
    nothing; Rejected, as creating it would be, when it is invalid or over a quota now.

    Raises Rejected naming the field (`kind`, `parallelism`, `chunk_time_limit_s`,
    `priority`, or `params` by parameter, or `quota`). Upload ids are resolved (and their ownership
    checked) as for a real job, so a preview and a creation reject the same input with
    the same errors.
    """
    plan = _job_plan(
        owner=owner,
        kind=kind,
        params=params,
        parallelism=parallelism,
        chunk_time_limit_s=chunk_time_limit_s,
        priority=priority,
        asker=owner,
    )
    if over := quotas.quota_errors(owner=owner, cost=plan.cost):
        raise Rejected({"quota": over})
    return plan


def job_plan_unadmitted(
    *,
    owner: Any,
    kind: str,
    params: Mapping[str, Any],
    parallelism: int | None = None,
    chunk_time_limit_s: int | None = None,
) -> JobPlan:
    """`job_plan` without its quota check, validated and split the same way: for work
    admitted as a whole (a sweep's jobs, whose summed cost jobs.services.admission checks)
    and for a schedule, saved whatever its owner runs now (each run is admitted as it
    fires)."""
    return _job_plan(
        owner=owner,
        kind=kind,
        params=params,
        parallelism=parallelism,
        chunk_time_limit_s=chunk_time_limit_s,
    )


def _job_plan(
    *,
    owner: Any,
    kind: str,
    params: Mapping[str, Any],
    parallelism: int | None,
    chunk_time_limit_s: int | None,
    priority: Any = None,
    asker: Any | None = None,
) -> JobPlan:
    try:
        spec = kinds.get(kind)
    except kinds.UnknownKind:
        names = ", ".join(k.name for k in kinds.all_kinds())
        raise Rejected({"kind": [f"Unknown kind {kind!r}; choose one of: {names}."]}) from None
    parallelism = _parallelism_clean(parallelism)
    time_limit = _chunk_time_limit_clean(spec, chunk_time_limit_s)
    chosen = _priority_clean(priority, asker=asker)
    try:
        clean = spec.clean_params(params)
        # The estimate sees what split sees: an upload's size, not only its id.
        resolved = clean | _uploads_resolve(owner=owner, kind=spec, params=clean)
        specs = splitting.kind_split(kind=spec, params=resolved)
    except ValidationError as exc:
        raise Rejected({"params": exc.message_dict}) from None
    cost = quotas.job_cost(
        owner=owner,
        kind=spec,
        params=resolved,
        chunks=len(specs),
        time_limit_s=options.chunk_time_limit_s(spec, time_limit),
    )
    return JobPlan(
        kind=kind,
        params=clean,
        specs=specs,
        parallelism=parallelism,
        cost=cost,
        chunk_time_limit_s=time_limit,
        priority=chosen,
    )


def _parallelism_clean(value: Any) -> int:
    """A job's parallelism as jobs.options' field validates it, after the JSON type check
    every API value gets; None takes COREBOARD_DEFAULT_PARALLELISM (Job.ALL_PROCESSES unless
    set to a number)."""
    field = parallelism_field()
    try:
        if (error := json_type_error(field, value)) is not None:
            raise ValidationError(error)
        cleaned = field.clean(value)
    except ValidationError as error:
        raise Rejected({"parallelism": error.messages}) from None
    if cleaned is None:
        return min(settings.COREBOARD_DEFAULT_PARALLELISM, settings.COREBOARD_MAX_PARALLELISM)
    return int(cleaned)


def _chunk_time_limit_clean(kind: kinds.JobKind, value: Any) -> int | None:
    """A job's chunk time limit as jobs.options' field validates it (at least 1 s, at most
    the kind's limit); None: the kind's."""
    field = chunk_time_limit_field(kind)
    try:
        if (error := json_type_error(field, value)) is not None:
            raise ValidationError(error)
        cleaned = field.clean(value)
    except ValidationError as error:
        raise Rejected({"chunk_time_limit_s": error.messages}) from None
    return None if cleaned is None else int(cleaned)


def _priority_clean(value: Any, *, asker: Any | None) -> int:
    """A job's priority as jobs.options' field validates it (`"low"`, `"normal"`, `"high"`,
    `"urgent"`; empty: normal), after the JSON type check every API value gets; urgent only
    when the person asking is one staff allowed (jobs.options.may_submit_urgent). A
    Job.Priority number (a rerun's stored value) is taken by its name.

    `asker` None: work Coreboard starts by itself (a study's runs, a schedule), possibly
    in a worker, which cannot read auth's tables: its priority was checked when a person
    set it up."""
    if isinstance(value, Job.Priority):
        value = priority_name(value)
    field = options.priority_field()
    try:
        if (error := json_type_error(field, value)) is not None:
            raise ValidationError(error)
        cleaned = field.clean(value)
    except ValidationError as error:
        raise Rejected({"priority": error.messages}) from None
    if cleaned is None:
        return int(Job.Priority.NORMAL)
    if (
        cleaned == Job.Priority.URGENT
        and asker is not None
        and not options.may_submit_urgent(asker)
    ):
        raise Rejected(
            {
                "priority": [
                    "Urgent is for people staff allowed (the “Can submit urgent jobs” "
                    "permission); choose low, normal or high."
                ]
            }
        )
    return int(cleaned)


def job_create(
    *,
    owner: Any,
    kind: str,
    params: Mapping[str, Any],
    parallelism: int | None = None,
    chunk_time_limit_s: int | None = None,
    priority: Any = None,
    rerun_of: Job | None = None,
    study: ScalingStudy | None = None,
    schedule: Schedule | None = None,
    by: Any | None = None,
) -> Job:
    """Validate, admit, store the job and its chunks, and dispatch it after commit.

    `by` is the person asking now, whose rate it spends (jobs.services.admission): a
    creation's, or a rerun's when `rerun_of` is given outside a study; None for work
    Coreboard starts by itself (a study's later runs), which the quotas alone admit.
    Raises Rejected naming the field (`kind`, `parallelism`, `chunk_time_limit_s`,
    `priority`, `params` by parameter, or `quota`) or RateLimited; nothing is stored or queued then.
    """
    scope = (
        admission.Scope.JOB_ACTION
        if rerun_of is not None and study is None
        else admission.Scope.JOB_CREATE
    )
    if by is not None:
        admission.rate_check(person=by, scope=scope)
    plan = _job_plan(
        owner=owner,
        kind=kind,
        params=params,
        parallelism=parallelism,
        chunk_time_limit_s=chunk_time_limit_s,
        priority=priority,
        asker=by,
    )
    with transaction.atomic():
        admission.admit(owner=owner, cost=plan.cost, by=by, scope=scope)
        return job_store(owner=owner, plan=plan, rerun_of=rerun_of, study=study, schedule=schedule)


def job_store(
    *,
    owner: Any,
    plan: JobPlan,
    rerun_of: Job | None = None,
    study: ScalingStudy | None = None,
    schedule: Schedule | None = None,
) -> Job:
    """Store an admitted plan's job and chunks and dispatch it after commit (only in the
    transaction that admitted it: jobs.services.admission.admit)."""
    (job,) = jobs_store(
        owner=owner, plans=[plan], rerun_of=rerun_of, study=study, schedule=schedule
    )
    return job


def jobs_store(
    *,
    owner: Any,
    plans: list[JobPlan],
    rerun_of: Job | None = None,
    study: ScalingStudy | None = None,
    schedule: Schedule | None = None,
    sweep: Sweep | None = None,
) -> list[Job]:
    """Store admitted plans' jobs (a sweep's: their `sweep_index` their place in `plans`)
    and chunks in two statements, and dispatch each after commit.

    Only in the transaction that admitted them all (jobs.services.admission.admit):
    `job_create` for one job, jobs.services.sweeps for the N jobs of a sweep."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("jobs_store outside the admitting transaction")
    # What the web process has loaded of each kind (the worker stamps each chunk with its own).
    versions = {plan.kind: kinds.version(plan.kind) for plan in plans}
    jobs = Job.objects.bulk_create(
        Job(
            owner=owner,
            kind=plan.kind,
            kind_package=versions[plan.kind].package,
            kind_source=versions[plan.kind].source,
            coreboard_commit=workers.coreboard_commit(),
            params=plan.params,
            parallelism=plan.parallelism,
            chunk_time_limit_s=plan.chunk_time_limit_s,
            priority=plan.priority,
            total_chunks=len(plan.specs),
            estimated_cpu_seconds=plan.cost.cpu_seconds,
            rerun_of=rerun_of,
            study=study,
            schedule=schedule,
            sweep=sweep,
            sweep_index=None if sweep is None else index,
        )
        for index, plan in enumerate(plans)
    )
    Chunk.objects.bulk_create(
        (
            Chunk(job=job, index=i, spec=spec)
            for job, plan in zip(jobs, plans, strict=True)
            for i, spec in enumerate(plan.specs)
        ),
        batch_size=1000,
    )
    for job in jobs:
        transaction.on_commit(partial(dispatch.job_dispatch, job_id=job.pk))
    return jobs


def _uploads_resolve(*, owner: Any, kind: kinds.JobKind, params: Params) -> Params:
    """What the kind's `split` reads in place of each upload id (see UploadField), if the
    owner may read that upload. Only `split` sees it: the job keeps the id in its params,
    and the chunk specs carry what `run` needs."""
    resolved: Params = {}
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


# --- actions by people -------------------------------------------------------------------------


def job_cancel(*, job: Job) -> Job:
    """Cancel an active job and return it, refreshed. Queued chunks will not start; running
    ones stop at their next progress call. Conflict if the job had already ended."""
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now(), version=F("version") + 1
        )
        if not updated:
            ended = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            raise Conflict(
                f"Job {job.pk} has already ended ({ended or 'deleted'}); nothing to cancel."
            )
        job.refresh_from_db()
        chunks_cancel_unstarted(job)
        job_ended(job)
        job_publish_after_commit(job)
    return job


def job_retry_failed(*, job: Job, by: Any | None = None) -> Job:
    """Run a failed job's unfinished chunks again and return it, refreshed; Conflict if
    there is nothing to retry.

    Admitted like a new job (jobs.services.admission): the job becomes active again and its
    chunks that run again, with their share of its estimate, count against its owner's
    quotas (Rejected by `quota` beyond them); `by`, the person asking, spends a retry.

    Only a job that ended `failed` qualifies. A cancelled job does not: somebody stopped it
    on purpose, and "run again" starts it afresh. A job whose `combine` (or result file)
    failed keeps its done chunks and only combines again.

    Every chunk neither done nor running goes back to pending (the failed ones and the ones
    cancelled when the job failed), so only the missing work runs; done chunks keep their
    results and `done_chunks` and `cpu_seconds` keep counting them. A chunk still running
    from the ended run keeps its lease: its completion now counts for the retried job, and
    if its process is gone the lease expires and it is claimed again. Accounting stays
    exactly-once because counters move only when a chunk leaves `running` under the job's
    lock (jobs.engine.chunks).

    Attempts start again from zero: a chunk is failed after COREBOARD_CHUNK_MAX_ATTEMPTS
    lost runs (meant for chunks that keep killing their worker), so carrying the old count
    over would fail a retried chunk early, blaming lost workers. Each chunk keeps its last
    error until it runs again. `started_at` is kept, so wall time (and speedup) covers the
    whole job, pause included.
    """
    scope = admission.Scope.JOB_ACTION
    if by is not None:
        admission.rate_check(person=by, scope=scope)
    with transaction.atomic():
        # The owner's admission lock before the job's row lock, in every path that takes both.
        admission.person_lock(job.owner, by)
        locked = Job.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None or locked.status != Job.Status.FAILED:
            retried = False
        elif not locked.chunks.filter(status=Chunk.Status.FAILED).exists():
            retried = _job_retry_combine(locked, by=by)
        else:
            retried = True
            _job_retry_chunks(locked, by=by)
    job.refresh_from_db()
    if not retried:
        raise Conflict(f"Job {job.pk} has nothing to retry ({job.status}).")
    return job


def _job_retry_admit(locked: Job, *, chunks: int, by: Any | None) -> None:
    """Admit a retry of `chunks` of the locked job (its owner's lock already held)."""
    estimate = locked.estimated_cpu_seconds or 0.0
    cost = quotas.Cost(1, chunks, estimate).share(chunks, locked.total_chunks)
    admission.admit(owner=locked.owner, cost=cost, by=by, scope=admission.Scope.JOB_ACTION)


def _job_retry_chunks(locked: Job, *, by: Any | None) -> None:
    again = locked.chunks.exclude(status__in=(Chunk.Status.DONE, Chunk.Status.RUNNING))
    _job_retry_admit(locked, chunks=again.count(), by=by)
    again.update(
        status=Chunk.Status.PENDING,
        attempts=0,
        failures=0,
        retry_at=None,
        queued_at=None,
        started_at=None,
        finished_at=None,
    )
    locked.status = Job.Status.RUNNING
    locked.failed_chunks = 0
    locked.finished_at = None
    locked.error = ""
    locked.result = None
    job_save(locked, ["status", "failed_chunks", "finished_at", "error", "result"])
    job_publish_after_commit(locked)
    transaction.on_commit(partial(dispatch.job_dispatch, job_id=locked.pk))


def _job_retry_combine(locked: Job, *, by: Any | None) -> bool:
    """A job whose combine (or result file) failed keeps its finished chunks: retrying it
    runs only the combine step again, on a worker (the reconciler finishes a running job
    with nothing left to run)."""
    unfinished = locked.chunks.filter(status__in=Chunk.UNFINISHED_STATUSES)
    if not locked.error.startswith(COMBINE_FAILED) or unfinished.exists():
        return False
    _job_retry_admit(locked, chunks=0, by=by)
    locked.status = Job.Status.RUNNING
    locked.finished_at = None
    locked.error = ""
    locked.result = None
    job_save(locked, ["status", "finished_at", "error", "result"])
    job_publish_after_commit(locked)
    return True


def job_rerun(*, job: Job, owner: Any, by: Any | None = None) -> Job:
    """Create a new job with `job`'s kind, parameters, parallelism and priority, owned
    by `owner`.

    Validated and admitted afresh like any new job (Rejected by field, RateLimited): an
    upload must still exist and belong to `owner`, the parallelism must be within today's
    limit, an urgent priority needs `owner`'s permission today, and the whole job's
    estimate counts against `owner`'s quotas; `by`, the person asking, spends a rerun.
    """
    return job_create(
        owner=owner,
        kind=job.kind,
        # Upload fields hold the upload's id, as the person gave it: validated afresh.
        params=job.params,
        # An all-processes job runs again with the default (all processes unless set).
        parallelism=job.parallelism or None,
        chunk_time_limit_s=job.chunk_time_limit_s,
        priority=Job.Priority(job.priority),
        rerun_of=job,
        by=by,
    )


def job_delete(*, job: Job) -> None:
    """Delete an ended job, its chunks and its result file; Conflict while it is active.

    An active job is refused rather than cancelled on the way: deleting cannot be undone,
    so stopping the work stays a separate, visible step. Uploads the job read are kept
    (they belong to their owner, and reruns may read them); reruns of the job stay, with
    `rerun_of` cleared. The result file goes after commit, so a rollback keeps it.
    """
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None:
            return
        if locked.is_active:
            raise Conflict(
                f"Job {locked.pk} is still {locked.status}; cancel it before deleting it."
            )
        if locked.result_file:
            storage, name = locked.result_file.storage, locked.result_file.name
            transaction.on_commit(partial(storage.delete, name))
        locked.delete()
