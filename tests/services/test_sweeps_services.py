"""Sweeps (jobs.services.sweeps, jobs.selectors.sweeps): N jobs admitted as one unit."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.throttling import SimpleRateThrottle

from jobs.models import Chunk, Job, Sweep
from jobs.selectors import sweeps as sweep_selectors
from jobs.services import Conflict, RateLimited, Rejected, sweeps
from tests.factories import ran_on_lanes

pytestmark = [pytest.mark.services, pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]

GRID_3X3: dict[str, Any] = {"chunks": [1, 2, 3], "ms": [1, 2, 3]}


def nothing_stored() -> bool:
    return not (Sweep.objects.exists() or Job.objects.exists() or Chunk.objects.exists())


def test_a_3x3_grid_creates_9_jobs_one_per_combination(
    alice: User, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        sweep = sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3, by=alice)
    runs = list(sweep.runs.order_by("sweep_index"))
    assert len(runs) == 9
    assert [run.sweep_index for run in runs] == list(range(9))
    # The first parameter varies slowest.
    assert [(run.params["chunks"], run.params["ms"]) for run in runs] == [
        (c, m) for c in (1, 2, 3) for m in (1, 2, 3)
    ]
    assert [run.total_chunks for run in runs] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert sweep.swept == ["chunks", "ms"]
    assert sorted(dispatched) == sorted(run.pk for run in runs)


def test_a_sweep_over_the_active_jobs_quota_creates_nothing(
    alice: User, settings: Any, dispatched: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 8
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(Rejected) as refused,
    ):
        sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3, by=alice)
    (message,) = refused.value.errors["quota"]
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in message
    assert "the quota is 8" in message
    assert nothing_stored()
    assert dispatched == []


def test_the_quotas_count_the_sum_of_the_runs_costs(alice: User, settings: Any) -> None:
    # Each run alone is within the CPU quota across active jobs; the nine together are not.
    one = sweeps.sweep_plans(owner=alice, kind="burn", swept=[], runs=[{"chunks": 3, "ms": 3}])[
        0
    ].cost.cpu_seconds
    settings.COREBOARD_QUOTA_CHUNK_S = one * 4
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3)
    assert any("COREBOARD_QUOTA_CHUNK_S" in m for m in refused.value.errors["quota"])
    assert any("This sweep of 9 jobs" in m for m in refused.value.errors["quota"])
    assert nothing_stored()


def test_the_per_job_cap_applies_to_each_run_not_to_the_sum(alice: User, settings: Any) -> None:
    plans = sweeps.sweep_plans(
        owner=alice,
        kind="burn",
        swept=[],
        runs=[{"chunks": c, "ms": m} for c in (1, 2, 3) for m in (1, 2, 3)],
    )
    largest = max(plan.cost.cpu_seconds for plan in plans)
    settings.COREBOARD_QUOTA_JOB_S = largest
    assert sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3).runs.count() == 9
    Job.objects.all().delete()
    settings.COREBOARD_QUOTA_JOB_S = largest - 0.001
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3)
    assert any("COREBOARD_QUOTA_JOB_S" in m for m in refused.value.errors["quota"])


def test_more_runs_than_the_limit_are_refused_naming_the_field_and_limit(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_SWEEP_MAX_RUNS = 8
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3)
    (message,) = refused.value.errors["grid"]
    assert "3 × 3 = 9" in message
    assert "COREBOARD_SWEEP_MAX_RUNS" in message
    assert "8" in message
    with pytest.raises(Rejected) as listed:
        sweeps.sweep_create(owner=alice, kind="burn", sets=[{"chunks": 1}] * 9)
    assert "COREBOARD_SWEEP_MAX_RUNS" in listed.value.errors["sets"][0]
    assert nothing_stored()


def test_a_huge_grid_is_refused_by_its_count_without_building_it(alice: User) -> None:
    values = list(range(1000))
    began = time.perf_counter()
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": values, "ms": values})
    assert "1,000,000 runs" in refused.value.errors["grid"][0]
    # A generous bound: building a million parameter sets would take far longer.
    assert time.perf_counter() - began < 5


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"grid": {"chunks": [1, 2]}, "sets": [{}]}, "grid"),
        ({}, "sets"),
        ({"grid": {"nope": [1, 2]}}, "grid"),
        ({"grid": {"chunks": []}}, "grid"),
        ({"grid": {"chunks": 3}}, "grid"),
        ({"grid": {"chunks": [1, 2]}, "params": {"chunks": 3}}, "grid"),
        ({"grid": {"chunks": [1, 2]}, "params": [1]}, "params"),
        ({"sets": "chunks"}, "sets"),
        ({"sets": [{"chunks": 1}, 2]}, "sets"),
        ({"kind": "nope", "grid": {"chunks": [1, 2]}}, "kind"),
        ({"grid": {"chunks": [1, 2]}, "parallelism": -1}, "parallelism"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(
    alice: User, request_: dict[str, Any], field: str
) -> None:
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, **{"kind": "burn", **request_})
    assert field in refused.value.errors
    assert nothing_stored()


def test_an_invalid_value_names_its_parameter_and_run(alice: User) -> None:
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": [1, 2], "ms": [1, -5]})
    (message,) = refused.value.errors["params"]["ms"]
    assert message.startswith("Run 1 (chunks = 1, ms = -5): ")
    assert nothing_stored()


def test_a_list_of_sets_runs_each_set_with_the_shared_params(alice: User) -> None:
    sweep = sweeps.sweep_create(
        owner=alice, kind="burn", params={"ms": 2}, sets=[{"chunks": 1}, {"chunks": 4}]
    )
    # Stored as the kind cleaned them, its defaults (burn's fail_rate) filled in.
    assert [run.params for run in sweep.runs.order_by("sweep_index")] == [
        {"chunks": 1, "ms": 2, "fail_rate": 0.0},
        {"chunks": 4, "ms": 2, "fail_rate": 0.0},
    ]
    assert sweep.swept == ["chunks"]
    assert sweep.grid is None
    assert sweep.base_params == {"ms": 2, "fail_rate": 0.0}


def test_a_sweep_spends_one_job_creation_of_the_rate(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    rates = dict(SimpleRateThrottle.THROTTLE_RATES)
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    rates["job-create"] = "2/minute"
    sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": [1, 2, 3]}, by=alice)
    sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": [1, 2, 3]}, by=alice)
    with pytest.raises(RateLimited):
        sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": [1, 2, 3]}, by=alice)
    assert Sweep.objects.count() == 2
    assert Job.objects.count() == 6


def test_cancel_stops_every_active_run_then_refuses(alice: User) -> None:
    sweep = sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3)
    done = sweep.runs.get(sweep_index=0)
    ran_on_lanes(done, run_s=1, gap_s=0)
    sweeps.sweep_cancel(sweep=sweep)
    statuses = dict(sweep.runs.values_list("sweep_index", "status"))
    assert statuses[0] == Job.Status.SUCCEEDED
    assert {statuses[i] for i in range(1, 9)} == {Job.Status.CANCELLED}
    assert sweep_selectors.sweep_as_dict(sweep)["status"] == "cancelled"
    with pytest.raises(Conflict):
        sweeps.sweep_cancel(sweep=sweep)


def test_its_shape_has_each_runs_figures_as_the_job_defines_them(alice: User) -> None:
    sweep = sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3)
    finished = ran_on_lanes(sweep.runs.get(sweep_index=4), run_s=2, gap_s=0)
    state = sweep_selectors.sweep_as_dict(sweep)
    assert state["status"] == "running"
    assert state["counts"] == {"pending": 8, "succeeded": 1}
    run = state["runs"][4]
    assert run["job"] == finished.pk
    assert run["params"] == {"chunks": 2, "ms": 2, "fail_rate": 0.0}
    assert finished.speedup is not None
    assert finished.wall_seconds is not None
    assert run["speedup"] == round(finished.speedup, 4)
    assert run["wall_seconds"] == round(finished.wall_seconds, 4)
    assert run["result"]
    assert state["runs"][0]["speedup"] is None


def test_the_csv_has_swept_params_first_then_figures_and_defuses_formulas(alice: User) -> None:
    sweep = sweeps.sweep_create(owner=alice, kind="burn", grid={"ms": [1, 2], "chunks": [1]})
    Job.objects.filter(sweep=sweep, sweep_index=0).update(
        status=Job.Status.FAILED, error="Traceback\n=HYPERLINK(1)"
    )
    rows = list(
        csv.reader(io.StringIO(sweep_selectors.sweep_csv(sweep_selectors.sweep_as_dict(sweep))))
    )
    assert rows[0] == [
        "index",
        "params.ms",
        "params.chunks",
        "params.fail_rate",
        *sweep_selectors.SWEEP_FIGURE_COLUMNS,
    ]
    assert rows[1][:3] == ["0", "1", "1"]
    assert rows[1][rows[0].index("result")] == "'=HYPERLINK(1)"
    assert len(rows) == 3


def test_history_lists_a_sweep_once_unless_jobs_are_matched_one_by_one(alice: User) -> None:
    from jobs.selectors import jobs as selectors

    sweep = sweeps.sweep_create(owner=alice, kind="burn", grid=GRID_3X3)
    alone = sweeps.sweep_create(owner=alice, kind="burn", sets=[{"chunks": 1}]).runs.get()
    collapsed = list(selectors.job_history(user=alice, sweeps_collapsed=True))
    assert [(job.sweep_id, job.sweep_index) for job in collapsed] == [
        (alone.sweep_id, 0),
        (sweep.pk, 0),
    ]
    assert selectors.job_history(user=alice, sweeps_collapsed=True, sweep=sweep.pk).count() == 9
    assert selectors.job_history(user=alice, sweeps_collapsed=True, status="pending").count() == 10
    assert selectors.job_history(user=alice).count() == 10
    # Its run 0 deleted, the next job stands for the sweep.
    sweep.runs.get(sweep_index=0).delete()
    leads = selectors.job_history(user=alice, sweeps_collapsed=True).filter(sweep=sweep)
    assert [job.sweep_index for job in leads] == [1]


def test_planning_stops_once_the_runs_chunks_pass_the_chunk_quota(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_CHUNKS = 100
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": [60, 60, 60, 60]})
    (message,) = refused.value.errors["quota"]
    assert message.startswith("The first 2 runs of this sweep already have 120 chunks")
    assert "COREBOARD_QUOTA_CHUNKS" in message
    assert nothing_stored()


def test_a_sweep_over_the_active_jobs_quota_is_refused_before_any_split(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 3
    # Run 1's value is invalid: refused by the quota first, so no run was planned.
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", grid={"chunks": [1, -1, 1, 1]})
    assert list(refused.value.errors) == ["quota"]


def test_the_runs_splits_share_one_splits_cpu_budget(
    alice: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep reads its thread's CPU clock between runs; here that clock says each run's
    # split took 30 ms, so each fits the 200 ms budget of one split and the first seven do not
    # (a real clock would make this depend on how busy the machine is).
    settings.COREBOARD_SPLIT_CPU_MS = 200
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 400
    settings.COREBOARD_SWEEP_MAX_RUNS = 400
    used = iter(range(0, 10_000, 30))
    monkeypatch.setattr(time, "thread_time", lambda: next(used) / 1000)
    with pytest.raises(Rejected) as refused:
        sweeps.sweep_create(owner=alice, kind="burn", params={"ms": 0}, sets=[{"chunks": 2}] * 400)
    (message,) = refused.value.errors["kind"]
    assert message.startswith("Splitting the first 6 runs of this sweep took more than 200 ms")
    assert "of CPU together (COREBOARD_SPLIT_CPU_MS" in message
    assert nothing_stored()


def test_storing_a_sweep_takes_the_same_statements_for_3_runs_as_for_30(
    alice: User, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 100
    counted = []
    for runs in (3, 30):
        with CaptureQueriesContext(connection) as queries:
            sweeps.sweep_create(owner=alice, kind="burn", sets=[{"chunks": 2}] * runs)
        counted.append(len(queries))
        Job.objects.all().delete()
    assert counted[0] == counted[1]
