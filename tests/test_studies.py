"""Scaling studies: creating, advancing one run at a time, cancelling, pages and API."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from jobs import kinds, services
from jobs.engine import dispatch
from jobs.models import Job, ScalingStudy
from jobs.selectors import studies as study_selectors
from jobs.services import studies
from tests.factories import complete_next, fail_next, make_job, start

pytestmark = pytest.mark.django_db


def workers_alive(monkeypatch: pytest.MonkeyPatch, processes: int) -> None:
    """Pretend one worker with this many processes (none when 0) is alive, running every kind."""
    every_kind = frozenset(kind.name for kind in kinds.all_kinds())

    def live_workers() -> dict[str, dispatch.LiveWorker]:
        alive = dispatch.LiveWorker(concurrency=processes, kinds=every_kind)
        return {"w1": alive} if processes else {}

    monkeypatch.setattr(dispatch, "live_workers", live_workers)


def _succeeded(owner: User, chunks: int = 2) -> Job:
    job = make_job(owner, chunks=chunks, parallelism=2)
    _finish(job)
    assert job.status == Job.Status.SUCCEEDED
    return job


def _finish(job: Job) -> None:
    start(job)
    for _ in range(job.total_chunks):
        complete_next(job)
    job.refresh_from_db()


def _run(study: ScalingStudy, parallelism: int) -> Job:
    return study.runs.get(parallelism=parallelism)


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
    assert state["serial_fraction"] == 0.25
    rows = list(csv.reader(io.StringIO(study_selectors.study_csv(study))))
    assert rows[0] == list(study_selectors.STUDY_EXPORT_COLUMNS)
    assert rows[2][:5] == ["2", str(run2.pk), "succeeded", "5.0", "1.6"]


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


# --- pages and API ------------------------------------------------------------------------------


@pytest.mark.pages
def test_measure_scaling_button_only_for_the_owner_of_a_succeeded_job(
    alice: User, alice_client: Client, staff_client: Client, dispatched: list[int]
) -> None:
    job = _succeeded(alice)
    page = alice_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'id="study-button"' in page
    assert (
        'id="study-button"'
        not in staff_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    )
    pending = make_job(alice)
    page = alice_client.get(reverse("jobs:detail", args=[pending.pk])).content.decode()
    assert 'id="study-button"' not in page


@pytest.mark.pages
def test_page_creates_a_study_and_shows_it(
    alice: User, alice_client: Client, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    workers_alive(monkeypatch, 2)
    job = _succeeded(alice)
    assert alice_client.get(reverse("jobs:study-create", args=[job.pk])).status_code == 405
    response = alice_client.post(reverse("jobs:study-create", args=[job.pk]))
    study = ScalingStudy.objects.get()
    assert response["Location"] == reverse("jobs:study", args=[study.pk])
    page = alice_client.get(response["Location"]).content.decode()
    assert "Scaling study #" in page
    assert 'id="study-chart"' in page
    assert alice_client.get(reverse("jobs:studies")).content.decode().count("#" + str(study.pk))
    exported = alice_client.get(reverse("jobs:study-export-json", args=[study.pk]))
    assert json.loads(exported.content)["levels"] == [1, 2]


@pytest.mark.pages
def test_page_explains_a_refusal(
    alice: User, alice_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers_alive(monkeypatch, 0)
    job = _succeeded(alice)
    response = alice_client.post(reverse("jobs:study-create", args=[job.pk]), follow=True)
    assert "Cannot measure scaling: 0 worker process(es) alive" in response.content.decode()
    assert not ScalingStudy.objects.exists()


@pytest.mark.pages
def test_page_says_a_study_had_already_ended(
    alice: User, alice_client: Client, dispatched: list[int]
) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice), processes=2)
    cancel = reverse("jobs:study-cancel", args=[study.pk])
    assert "cancelled." in alice_client.post(cancel, follow=True).content.decode()
    again = alice_client.post(cancel, follow=True).content.decode()
    assert f"Scaling study {study.pk} has already ended (cancelled)." in again


@pytest.mark.pages
def test_nobody_sees_another_users_study(
    alice: User,
    mallory_client: Client,
    mallory_api: APIClient,
    staff_client: Client,
    dispatched: list[int],
) -> None:
    job = _succeeded(alice)
    study = studies.study_create(owner=alice, job=job, processes=2)
    for name in ("jobs:study", "jobs:study-export-csv", "jobs:study-export-json"):
        assert mallory_client.get(reverse(name, args=[study.pk])).status_code == 404
        assert staff_client.get(reverse(name, args=[study.pk])).status_code == 404
    assert mallory_client.post(reverse("jobs:study-cancel", args=[study.pk])).status_code == 404
    assert mallory_client.post(reverse("jobs:study-create", args=[job.pk])).status_code == 404
    assert mallory_api.get(reverse("api-study", args=[study.pk])).status_code == 404
    assert mallory_api.post(reverse("api-study-cancel", args=[study.pk])).status_code == 404
    assert mallory_api.get(reverse("api-study-export-csv", args=[study.pk])).status_code == 404
    assert mallory_api.get(reverse("api-studies")).json()["results"] == []
    refused = mallory_api.post(reverse("api-studies"), {"job": job.pk}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"job": [f"No job with id {job.pk} of yours."]}
    study.refresh_from_db()
    assert study.status == ScalingStudy.Status.RUNNING


@pytest.mark.api
def test_api_creates_reads_cancels_and_exports(
    alice: User, alice_api: APIClient, dispatched: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    workers_alive(monkeypatch, 3)
    job = _succeeded(alice)
    for body, field in (
        ({"job": "12"}, "job"),
        ({"job": True}, "job"),
        ({"job": 1, "jobs": 1}, "jobs"),
    ):
        refused = alice_api.post(reverse("api-studies"), body, format="json")
        assert refused.status_code == 400
        assert field in refused.json()
    created = alice_api.post(reverse("api-studies"), {"job": job.pk}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["levels"] == [1, 2, 3]
    assert [run["status"] for run in body["runs"]] == ["pending", "waiting", "waiting"]
    assert alice_api.get(reverse("api-study", args=[body["id"]])).json() == body
    exported = alice_api.get(reverse("api-study-export-csv", args=[body["id"]]))
    assert exported["Content-Type"] == "text/csv"
    assert exported.content.decode().splitlines()[0] == ",".join(
        study_selectors.STUDY_EXPORT_COLUMNS
    )
    cancelled = alice_api.post(reverse("api-study-cancel", args=[body["id"]]))
    assert cancelled.json()["status"] == "cancelled"
    assert alice_api.post(reverse("api-study-cancel", args=[body["id"]])).status_code == 409


# --- with a real prefork worker -----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_study_of_a_primes_job_runs_to_the_end_on_two_processes(alice: User) -> None:
    from tests.waiting import poll_until, wait_for_job

    params = {"start": 0, "stop": 30_000_000, "chunks": 8}
    job = wait_for_job(make_job(alice, "primes", committed=True, **params).pk, until={"succeeded"})
    study = studies.study_create(owner=alice, job=job, processes=2)
    assert study.levels == [1, 2]

    def ended() -> ScalingStudy | None:
        study.refresh_from_db()
        return None if study.is_active else study

    poll_until(ended, timeout=120)
    assert study.status == ScalingStudy.Status.SUCCEEDED, study.error
    run1, run2 = _run(study, 1), _run(study, 2)
    assert run1.result == run2.result == job.result
    # One after the other: the second run started after the first had finished.
    assert run1.finished_at is not None
    assert run1.finished_at <= run2.created_at
    assert len({c.pid for c in run2.chunks.all()}) == 2
    rows = list(csv.DictReader(io.StringIO(study_selectors.study_csv(study))))
    assert [row["parallelism"] for row in rows] == ["1", "2"]
    assert run1.wall_seconds
    assert run2.wall_seconds
    speedup = run1.wall_seconds / run2.wall_seconds
    assert float(rows[1]["speedup"]) == pytest.approx(speedup, abs=1e-4)
    assert float(rows[1]["efficiency"]) == pytest.approx(speedup / 2, abs=1e-4)
    # Karp-Flatt by hand: (1/S - 1/p) / (1 - 1/p) at p = 2.
    assert float(rows[1]["karp_flatt"]) == pytest.approx((1 / speedup - 0.5) / 0.5, abs=1e-3)
    assert rows[0]["karp_flatt"] == ""
    assert float(rows[0]["speedup"]) == 1.0
