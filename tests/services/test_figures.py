"""A job's figures as jobs/scaling.py defines them, on jobs with known times: speedup
against its baseline (a measured parallelism-1 run, else the chunks' CPU time),
parallelism achieved, processes used and efficiency; which run is the baseline."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from jobs import migrations, protocol, scaling
from jobs.models import Job
from jobs.selectors import studies as study_selectors
from jobs.services import studies
from tests.factories import finish_job, finished, make_job, ran_on_lanes, study_run

pytestmark = [pytest.mark.services, pytest.mark.django_db]

# A burn job's parameters shared by the runs that should measure each other.
PARAMS: dict[str, Any] = {"chunks": 4, "ms": 1000, "fail_rate": 0.0}


def _figures(job: Job) -> tuple[Any, ...]:
    job.refresh_from_db()
    return (
        job.wall_seconds,
        job.speedup,
        job.speedup_baseline,
        job.parallelism_achieved,
        job.processes_used,
        job.efficiency,
    )


def test_without_a_parallelism_1_run_the_speedup_is_the_chunks_cpu_time_over_wall(
    alice: User,
) -> None:
    # Four 1 s chunks on two lanes, each 0.25 s after the last, half of each on the CPU:
    # wall 2.5 s, CPU 2 s.
    job = finished(alice, chunks=4, run_s=1.0, gap_s=0.25, cpu_share=0.5, params=PARAMS)
    assert _figures(job) == pytest.approx((2.5, 0.8, "cpu", 0.8, 2, 0.4))
    # Estimated from the CPU time, the speedup is the parallelism achieved.
    assert job.speedup == job.parallelism_achieved


def test_a_measured_parallelism_1_run_is_the_baseline(alice: User) -> None:
    # One lane: 4 × (0.25 s + 1 s) = 5 s, 4 s of CPU. Two lanes: 2.5 s, 4 s of CPU.
    single = finished(alice, chunks=4, run_s=1.0, gap_s=0.25, processes=1, parallelism=1,
                      params=PARAMS)  # fmt: skip
    double = finished(alice, chunks=4, run_s=1.0, gap_s=0.25, params=PARAMS)
    assert _figures(single) == pytest.approx((5.0, 1.0, "measured", 0.8, 1, 1.0))
    assert single.baseline_job_id == single.pk
    assert _figures(double) == pytest.approx((2.5, 2.0, "measured", 1.6, 2, 1.0))
    assert double.baseline_job_id == single.pk
    assert double.baseline_seconds == pytest.approx(5.0)
    # The two figures differ once the baseline is measured: speedup counts the time the
    # parallelism-1 run really took, parallelism achieved only the CPU kept busy.
    assert double.speedup != double.parallelism_achieved


def test_a_parallelism_1_run_that_succeeds_later_becomes_the_baseline_of_earlier_runs(
    alice: User,
) -> None:
    double = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS)
    assert double.speedup_baseline == "cpu"
    first = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, processes=1, parallelism=1,
                     params=PARAMS)  # fmt: skip
    double.refresh_from_db()
    assert (double.speedup_baseline, double.baseline_job_id) == ("measured", first.pk)
    assert double.speedup == pytest.approx(4.0 / 2.0)
    # A baseline once measured stays: a later parallelism-1 run does not move the figure.
    finished(alice, chunks=4, run_s=2.0, gap_s=0.0, processes=1, parallelism=1, params=PARAMS)
    double.refresh_from_db()
    assert double.baseline_job_id == first.pk


def test_only_the_owners_runs_of_the_same_kind_and_parameters_are_baselines(
    alice: User, bob: User
) -> None:
    finished(bob, chunks=4, run_s=1.0, gap_s=0.0, processes=1, parallelism=1, params=PARAMS)
    other = {**PARAMS, "ms": 999}
    finished(alice, chunks=4, run_s=1.0, gap_s=0.0, processes=1, parallelism=1, params=other)
    job = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS)
    assert (job.speedup_baseline, job.baseline_job_id) == ("cpu", None)


def test_a_deleted_baseline_run_keeps_its_measured_time(alice: User) -> None:
    single = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, processes=1, parallelism=1,
                      params=PARAMS)  # fmt: skip
    double = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS)
    single.delete()
    double.refresh_from_db()
    assert (double.speedup_baseline, double.baseline_job_id) == ("measured", None)
    assert double.speedup == pytest.approx(2.0)


@pytest.mark.parametrize("status", [Job.Status.FAILED, Job.Status.CANCELLED])
def test_a_job_that_did_not_succeed_has_parallelism_achieved_but_no_speedup(
    alice: User, status: str
) -> None:
    job = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS)
    Job.objects.filter(pk=job.pk).update(status=status)
    wall, speedup, baseline, achieved, _, efficiency = _figures(job)
    assert (wall, speedup, baseline, efficiency) == (2.0, None, None, None)
    assert achieved == pytest.approx(2.0)
    assert Job.objects.with_timings().get(pk=job.pk).speedup is None


def test_processes_used_is_at_most_the_parallelism(alice: User) -> None:
    # Its two slots moved between four processes over the run: at most two ran at once.
    job = make_job(alice, parallelism=2, **PARAMS)
    ran_on_lanes(job, run_s=1.0, gap_s=0.0, processes=4)
    assert job.processes_used == 2
    every = make_job(alice, parallelism=None, **PARAMS)
    ran_on_lanes(every, run_s=1.0, gap_s=0.0, processes=4)
    assert every.processes_used == 4
    assert every.efficiency == pytest.approx(4.0 / 1.0 / 4)


def test_the_engine_settles_the_figures_when_a_job_succeeds(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    double = make_job(alice, parallelism=2, **PARAMS)
    finish_job(double)
    assert double.processes_used == 1  # the test process recorded every chunk
    assert double.speedup_baseline == "cpu"
    single = make_job(alice, parallelism=1, **PARAMS)
    with django_capture_on_commit_callbacks(execute=True):
        finish_job(single)
    assert single.baseline_job_id == single.pk
    assert single.speedup == pytest.approx(1.0)
    double.refresh_from_db()
    assert double.baseline_job_id == single.pk
    assert protocol.job_state(double)["speedup_baseline"] == "measured"
    assert protocol.job_state(double)["baseline_job"] == single.pk


def test_a_study_run_is_measured_against_its_own_parallelism_1_run(
    alice: User, dispatched: list[int]
) -> None:
    source = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS)
    study = studies.study_create(owner=alice, job=source, processes=2)
    base = ran_on_lanes(study_run(study, 1), run_s=1.0, gap_s=0.1, processes=1)
    # A newer parallelism-1 run of the same work, outside the study.
    later = timezone.now() + timedelta(hours=1)
    ran_on_lanes(
        make_job(alice, parallelism=1, **PARAMS), run_s=0.5, gap_s=0.0, processes=1, started=later
    )
    studies.study_advance(study_id=study.pk)
    run = ran_on_lanes(study_run(study, 2), run_s=1.0, gap_s=0.1, processes=2)
    assert run.baseline_job_id == base.pk
    state = study_selectors.study_as_dict(study)
    point = {point["parallelism"]: point for point in state["runs"]}[2]
    # The study's speedup at p = 2 is its run's own speedup, to the digit.
    assert point["speedup"] == protocol.job_state(run)["speedup"] == pytest.approx(4.4 / 2.2)
    # The source job ran before any parallelism-1 run: the study's measured it.
    source.refresh_from_db()
    assert source.baseline_job_id == base.pk
    assert source.speedup == pytest.approx(4.4 / 2.0)


def test_an_amdahl_fit_needs_three_levels() -> None:
    two = scaling.scaling_analyse({1: 10.0, 2: 6.0})
    assert two.serial_fraction is None
    assert two.max_speedup is None
    assert all(point.amdahl_speedup is None for point in two.points)
    assert two.fit_note is not None
    assert "this study has 2" in two.fit_note
    three = scaling.scaling_analyse({1: 10.0, 2: 6.0, 4: 4.0})
    assert three.serial_fraction is not None
    assert three.fit_note is None
    # A level without a time does not count.
    unfinished = scaling.scaling_analyse({1: 10.0, 2: 6.0, 4: None})
    assert unfinished.serial_fraction is None
    assert unfinished.fit_note == (
        "No Amdahl fit yet: it needs speedups at 3 or more parallelisms; 2 of this study's "
        "3 are measured."
    )


def test_the_migration_fills_in_what_the_engine_stores(alice: User, bob: User) -> None:
    """Migration 0010's backfill gives jobs that succeeded before it the figures the engine
    gives a job when it succeeds."""
    [path] = Path(migrations.__file__).parent.glob("*_speedup_baseline.py")
    backfill = importlib.import_module(f"jobs.migrations.{path.stem}").BACKFILL
    single = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, processes=1, parallelism=1,
                      params=PARAMS)  # fmt: skip
    jobs = [
        single,
        finished(alice, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS),
        finished(alice, chunks=4, run_s=1.0, gap_s=0.0, processes=4, parallelism=2),
        finished(bob, chunks=4, run_s=1.0, gap_s=0.0, params=PARAMS),
    ]
    every = make_job(alice, parallelism=None, **PARAMS)
    jobs.append(ran_on_lanes(every, run_s=1.0, gap_s=0.0, processes=3))
    settled = {job.pk: (*_figures(job), job.baseline_job_id) for job in jobs}
    Job.objects.update(processes_used=None, baseline_seconds=None, baseline_job=None)
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    filled = {job.pk: (*_figures(job), job.baseline_job_id) for job in jobs}
    assert filled == settled
    assert filled[single.pk][-1] == single.pk
