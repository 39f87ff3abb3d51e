"""The engine tells the scaling studies through its signals (jobs.engine.signals), which
jobs.apps connects: the engine imports no service, and studies still advance."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from jobs.engine import signals
from jobs.models import Job, ScalingStudy
from jobs.services import studies
from tests.factories import complete_next, make_job, start

pytestmark = [pytest.mark.django_db, pytest.mark.services]


def _finish(job: Job) -> None:
    start(job)
    for _ in range(job.total_chunks):
        complete_next(job)
    job.refresh_from_db()


def _study_with_first_run_done(owner: User) -> ScalingStudy:
    source = make_job(owner, chunks=2, parallelism=2)
    _finish(source)
    study = studies.study_create(owner=owner, job=source, processes=2)
    # Its end's on_commit callbacks never run here (the test's transaction never commits).
    _finish(study.runs.get(parallelism=1))
    return study


def test_the_reconciler_pass_advances_a_study_whose_run_ended(
    alice: User, dispatched: list[int]
) -> None:
    study = _study_with_first_run_done(alice)
    assert not study.runs.filter(parallelism=2).exists()
    signals.reconciler_pass.send(sender=None)
    assert study.runs.get(parallelism=2).is_active


def test_job_finished_advances_the_study_of_its_job_only(
    alice: User, dispatched: list[int]
) -> None:
    study = _study_with_first_run_done(alice)
    signals.job_finished.send(sender=Job, job_id=0, study_id=None)
    assert not study.runs.filter(parallelism=2).exists()
    signals.job_finished.send(sender=Job, job_id=0, study_id=study.pk)
    assert study.runs.get(parallelism=2).is_active
