"""Scaling studies in the services: creating, advancing one run at a time, cancelling,
figures."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import User

from jobs import services
from jobs.models import Job, ScalingStudy
from jobs.selectors import studies as study_selectors
from jobs.services import studies
from tests.factories import fail_next, make_job, start
from tests.factories import finish_job as _finish
from tests.factories import study_run as _run
from tests.factories import succeeded_job as _succeeded

pytestmark = pytest.mark.django_db


@pytest.mark.services
def test_study_starts_with_one_run_at_parallelism_one(alice: User, dispatched: list[int]) -> None:
    job = _succeeded(alice)
    study = studies.study_create(owner=alice, job=job, processes=6)
    assert study.levels == [1, 2, 4, 6]
    assert study.status == ScalingStudy.Status.RUNNING
    (run,) = study.runs.all()
    assert run.parallelism == 1
    assert (run.kind, run.params, run.owner) == (job.kind, job.params, alice)
    assert run.rerun_of == job


@pytest.mark.services
def test_runs_go_one_after_another_and_advancing_is_idempotent(
    alice: User, dispatched: list[int]
) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice), processes=2)
    assert not studies.study_advance(study_id=study.pk)  # run 1 still active
    assert study.runs.count() == 1
    _finish(_run(study, 1))
    assert studies.study_advance(study_id=study.pk)
    assert not studies.study_advance(study_id=study.pk)
    assert sorted(study.runs.values_list("parallelism", flat=True)) == [1, 2]
    assert _run(study, 2).status == Job.Status.PENDING
    _finish(_run(study, 2))
    assert studies.studies_advance() == 1
    study.refresh_from_db()
    assert study.status == ScalingStudy.Status.SUCCEEDED
    assert study.finished_at is not None
    assert studies.studies_advance() == 0
    assert study.runs.count() == 2


@pytest.mark.services
def test_a_finishing_run_starts_the_next_after_commit(
    alice: User, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice), processes=2)
    with django_capture_on_commit_callbacks(execute=True):
        _finish(_run(study, 1))
    assert _run(study, 2).is_active


@pytest.mark.services
def test_only_the_owners_succeeded_jobs_can_be_measured(
    alice: User, bob: User, dispatched: list[int]
) -> None:
    pending = make_job(alice)
    with pytest.raises(services.Rejected, match="only a succeeded job") as refused:
        studies.study_create(owner=alice, job=pending, processes=2)
    assert "job" in refused.value.errors
    with pytest.raises(services.Rejected, match="owner"):
        studies.study_create(owner=bob, job=_succeeded(alice), processes=2)
    with pytest.raises(services.Rejected, match="at least 2") as too_few:
        studies.study_create(owner=alice, job=_succeeded(alice), processes=1)
    assert "workers" in too_few.value.errors
    assert not ScalingStudy.objects.exists()


@pytest.mark.services
def test_levels_stop_at_the_parallelism_limit(alice: User, settings: Any) -> None:
    settings.COREBOARD_MAX_PARALLELISM = 5
    assert studies.study_levels(processes=16) == [1, 2, 4, 5]


@pytest.mark.services
def test_a_failed_run_fails_the_study(alice: User, dispatched: list[int]) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice, chunks=1), processes=2)
    run = _run(study, 1)
    start(run)
    fail_next(run)
    assert studies.study_advance(study_id=study.pk)
    study.refresh_from_db()
    assert study.status == ScalingStudy.Status.FAILED
    assert f"parallelism 1 (job {run.pk}) ended failed" in study.error


@pytest.mark.services
def test_quotas_apply_to_each_run(alice: User, dispatched: list[int], settings: Any) -> None:
    job = _succeeded(alice)
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 1
    other = make_job(alice)
    with pytest.raises(services.Rejected) as refused:
        studies.study_create(owner=alice, job=job, processes=2)
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in refused.value.errors["quota"][0]
    services.job_cancel(job=other)
    study = studies.study_create(owner=alice, job=job, processes=2)
    _finish(_run(study, 1))
    make_job(alice)  # takes the one active job allowed before run 2 starts
    assert studies.study_advance(study_id=study.pk)
    study.refresh_from_db()
    assert study.status == ScalingStudy.Status.FAILED
    assert "parallelism 2 was refused" in study.error
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in study.error


@pytest.mark.services
def test_cancel_stops_the_study_and_its_run(alice: User, dispatched: list[int]) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice), processes=4)
    assert studies.study_cancel(study=study)
    assert study.status == ScalingStudy.Status.CANCELLED
    assert _run(study, 1).status == Job.Status.CANCELLED
    with pytest.raises(services.Conflict, match="already ended"):
        studies.study_cancel(study=study)
    assert not studies.study_advance(study_id=study.pk)
    assert study.runs.count() == 1


@pytest.mark.services
def test_figures_come_from_the_runs_wall_times(alice: User, dispatched: list[int]) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice), processes=2)
    for level in (1, 2):
        if level > 1:
            studies.study_advance(study_id=study.pk)
        _finish(_run(study, level))
    base = _run(study, 1)
    Job.objects.filter(pk=base.pk).update(finished_at=base.started_at + _seconds(8.0))
    run2 = _run(study, 2)
    Job.objects.filter(pk=run2.pk).update(finished_at=run2.started_at + _seconds(5.0))
    state = study_selectors.study_as_dict(study)
    by_p = {run["parallelism"]: run for run in state["runs"]}
    assert by_p[2]["speedup"] == 1.6
    assert by_p[2]["efficiency"] == 0.8
    assert by_p[2]["karp_flatt"] == 0.25  # (1/1.6 - 1/2) / (1 - 1/2)
    # Two levels determine Amdahl's serial fraction exactly: no fit, and the study says why.
    assert state["serial_fraction"] is None
    assert state["max_speedup"] is None
    assert state["fit_note"] is not None
    assert "needs speedups at 3 or more parallelisms" in state["fit_note"]
    assert "this study has 2 (parallelism 1 and 2)" in state["fit_note"]
    rows = list(csv.reader(io.StringIO(study_selectors.study_csv(study))))
    assert rows[0] == list(study_selectors.STUDY_EXPORT_COLUMNS)
    assert rows[2][:5] == ["2", str(run2.pk), "succeeded", "5.0", "1.6"]


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)
