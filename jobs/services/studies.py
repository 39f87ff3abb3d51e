"""Scaling studies: a finished job's work run again at parallelism 1, 2, 4, … in turn.

The runs go one after another, never side by side: two runs sharing the processes would
each measure the other. A study starts its first run when it is created; each later run
starts when the one before has succeeded (`study_advance`). Advancing is idempotent and
safe to call from anywhere at any time: under the study's row lock it looks at the runs
that exist and does the one thing missing (start the next level, or end the study), and
a database constraint allows one run per level. It is called right after a run's job
finishes and by the reconciler on every pass (the engine's signals, connected in
jobs.apps), so a worker that dies between the end of one run and the start of the next
delays the study by one reconciler period, no more.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from jobs import scaling
from jobs.engine import workers
from jobs.models import Job, ScalingStudy
from jobs.services import admission
from jobs.services.errors import Conflict, Rejected
from jobs.services.jobs import job_cancel, job_create

logger = logging.getLogger(__name__)

MIN_PROCESSES = 2


def study_levels(*, processes: int) -> list[int]:
    """The parallelisms a study runs: 1, 2, 4, … up to `processes` (and `processes`),
    never above COREBOARD_MAX_PARALLELISM."""
    return scaling.scaling_levels(min(processes, settings.COREBOARD_MAX_PARALLELISM))


def study_create(
    *, owner: Any, job: Job, processes: int | None = None, by: Any | None = None
) -> ScalingStudy:
    """Start a scaling study of `job` (the owner's own, succeeded job) and its first run.

    `processes` is how far the study goes; by default the worker processes alive now.
    Raises Rejected by field: `job` (not yours, not succeeded), `workers` (fewer than
    two processes to compare), or what creating the first run refuses (quotas, params);
    RateLimited when `by`, the person asking, has no job creation left (a study counts
    as one; its later runs are admitted by the quotas alone, as they come).
    """
    if by is not None:
        admission.rate_check(person=by, scope=admission.Scope.JOB_CREATE)
    if job.owner_id != owner.pk:
        raise Rejected({"job": ["Only the job's owner can measure its scaling."]})
    if job.status != Job.Status.SUCCEEDED:
        raise Rejected(
            {"job": [f"Job {job.pk} is {job.status}; only a succeeded job can be measured."]}
        )
    if processes is None:
        try:
            live = workers.live_workers()
        except redis.RedisError:
            raise Conflict(
                "The broker (Redis) is not answering, so the live worker processes are "
                "unknown; say how many processes to measure, or try again once it answers."
            ) from None
        processes = workers.kind_capacity(live, job.kind)
    levels = study_levels(processes=processes)
    if len(levels) < MIN_PROCESSES:
        raise Rejected(
            {
                "workers": [
                    f"{processes} worker process(es) alive; a scaling study needs at least "
                    f"{MIN_PROCESSES}. Start a worker with more processes first."
                ]
            }
        )
    with transaction.atomic():
        study = ScalingStudy.objects.create(
            owner=owner,
            source=job,
            kind=job.kind,
            params=job.params,
            levels=levels,
        )
        _study_run_create(study, levels[0], by=by)
    return study


def _study_run_create(study: ScalingStudy, parallelism: int, *, by: Any | None = None) -> Job:
    return job_create(
        owner=_owner_key(study),
        kind=study.kind,
        params=study.params,
        parallelism=parallelism,
        rerun_of=study.source,
        study=study,
        by=by,
    )


def _owner_key(study: ScalingStudy) -> Any:
    """The study's owner as its key alone, loaded without a query: the worker processes
    advance studies (the reconciler, a run's end), and their database role may not read
    auth_user (launcher.least_privilege). A run needs only the owner's id (its foreign key,
    the quotas); any other field would be loaded on access, and refused there."""
    return get_user_model().from_db(study._state.db, ["id"], [study.owner_id])


def study_advance(*, study_id: int) -> bool:
    """Do the study's next step if one is due; True if something changed.

    A study being advanced elsewhere (its row locked) is skipped: that caller does the step.
    """
    with transaction.atomic():
        study = (
            ScalingStudy.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("source")
            .filter(pk=study_id)
            .first()
        )
        if study is None or not study.is_active:
            return False
        runs = {run.parallelism: run for run in study.runs.only("pk", "parallelism", "status")}
        for level in study.levels:
            run = runs.get(level)
            if run is None:
                try:
                    _study_run_create(study, level)
                except Rejected as rejected:
                    reasons = "; ".join(rejected.messages)
                    _study_end(
                        study,
                        ScalingStudy.Status.FAILED,
                        f"The run at parallelism {level} was refused: {reasons}",
                    )
                return True
            if run.is_active:
                return False
            if run.status != Job.Status.SUCCEEDED:
                _study_end(
                    study,
                    ScalingStudy.Status.FAILED,
                    f"The run at parallelism {level} (job {run.pk}) ended {run.status}.",
                )
                return True
        _study_end(study, ScalingStudy.Status.SUCCEEDED)
        return True


def _study_end(study: ScalingStudy, status: str, error: str = "") -> None:
    study.status = status
    study.error = error
    study.finished_at = timezone.now()
    study.save(update_fields=["status", "error", "finished_at"])


def studies_advance(**signal: Any) -> int:
    """The reconciler's pass: advance every running study without an active run.

    Connected to jobs.engine.signals.reconciler_pass (`signal` is its sender and name)."""
    active_run = Job.objects.filter(study_id=OuterRef("pk"), status__in=Job.ACTIVE_STATUSES)
    due = ScalingStudy.objects.filter(status=ScalingStudy.Status.RUNNING).exclude(
        Exists(active_run)
    )
    return sum(study_advance(study_id=pk) for pk in due.values_list("pk", flat=True))


def study_advance_after_run(*, study_id: int | None, **signal: Any) -> None:
    """After a run's job committed its end: start the next run now rather than at the
    reconciler's next pass. Never raises: the caller is a worker recording chunks, and
    the reconciler retries whatever failed here.

    Connected to jobs.engine.signals.job_finished, sent for every job: one that is not a
    study's run (`study_id` None) has nothing to advance."""
    if study_id is None:
        return
    try:
        study_advance(study_id=study_id)
    except Exception:
        logger.exception("could not advance scaling study %s; the reconciler will", study_id)


def study_cancel(*, study: ScalingStudy) -> ScalingStudy:
    """Stop a running study and its active run and return it, refreshed; Conflict if it
    had already ended."""
    with transaction.atomic():
        locked = ScalingStudy.objects.select_for_update().filter(pk=study.pk).first()
        if locked is None or not locked.is_active:
            ended = locked.status if locked is not None else "deleted"
            raise Conflict(f"Scaling study {study.pk} has already ended ({ended}).")
        _study_end(locked, ScalingStudy.Status.CANCELLED)
        for run in locked.runs.filter(status__in=Job.ACTIVE_STATUSES):
            # It may have ended since: that is what cancelling it wants anyway.
            with contextlib.suppress(Conflict):
                job_cancel(job=run)
    study.refresh_from_db()
    return study
