"""The schedule pages: saved from a job, errors beside their fields, private to their owner,
turned off, deleted; scheduled runs marked in history and refusals on the schedule's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_celery_beat.models import PeriodicTask

from jobs.models import Schedule
from jobs.services import schedules
from tests.factories import make_job

pytestmark = [pytest.mark.pages, pytest.mark.django_db]

FORM: dict[str, Any] = {
    "name": "nightly",
    "how": "cron",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "enabled": "on",
}


def test_the_job_page_offers_schedule_this_to_its_owner(
    alice: User, alice_client: Client, staff_client: Client
) -> None:
    job = make_job(alice, "burn")
    link = f"/schedules/new/?job={job.pk}"
    assert link in alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert link not in staff_client.get(f"/jobs/{job.pk}/").content.decode()


def test_a_schedule_saved_from_a_job_repeats_its_parameters(
    alice: User, alice_client: Client
) -> None:
    job = make_job(alice, "burn", chunks=3, ms=2)
    page = alice_client.get(f"/schedules/new/?job={job.pk}")
    assert page.status_code == 200
    assert f"burn (from job {job.pk})" in page.content.decode()
    response = alice_client.post("/schedules/new/", {**FORM, "job": job.pk})
    schedule = Schedule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/schedules/{schedule.pk}/"
    assert (schedule.kind, schedule.params, schedule.source_id) == ("burn", job.params, job.pk)
    assert str(schedule.periodic_task.crontab.timezone) == "Europe/Berlin"
    listing = alice_client.get("/schedules/").content.decode()
    assert "nightly" in listing
    assert "0 3 * * *" in listing


def test_a_bad_cron_expression_is_shown_beside_its_field_and_nothing_is_saved(
    alice: User, alice_client: Client
) -> None:
    job = make_job(alice, "burn")
    response = alice_client.post("/schedules/new/", {**FORM, "job": job.pk, "cron": "0 25 * * *"})
    assert response.status_code == 200
    assert "cron" in response.context["form"].errors
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.exists()


def test_the_chosen_timing_is_required_beside_its_field(alice: User, alice_client: Client) -> None:
    job = make_job(alice, "burn")
    every = alice_client.post("/schedules/new/", {**FORM, "job": job.pk, "how": "every"})
    assert "every" in every.context["form"].errors
    cron = alice_client.post("/schedules/new/", {**FORM, "job": job.pk, "cron": ""})
    assert "cron" in cron.context["form"].errors
    assert not Schedule.objects.exists()


def test_another_persons_job_cannot_be_scheduled(bob: User, alice_client: Client) -> None:
    job = make_job(bob, "burn")
    response = alice_client.post("/schedules/new/", {**FORM, "job": job.pk})
    assert response.status_code == 200
    assert "job" in response.context["form"].errors
    assert not Schedule.objects.exists()


def test_nobody_sees_or_touches_another_persons_schedule(
    alice: User, mallory_client: Client, staff_client: Client
) -> None:
    schedule = schedules.schedule_save(
        owner=alice,
        name="mine",
        kind="burn",
        params={"chunks": 1, "ms": 1},
        timing=schedules.Timing(every=1, unit="hours"),
    )
    for client in (mallory_client, staff_client):
        assert client.get(f"/schedules/{schedule.pk}/").status_code == 404
        assert client.post(f"/schedules/{schedule.pk}/", FORM).status_code == 404
        assert client.post(f"/schedules/{schedule.pk}/toggle/", {"enabled": "0"}).status_code == 404
        assert client.post(f"/schedules/{schedule.pk}/delete/").status_code == 404
        assert "mine" not in client.get("/schedules/").content.decode()
    schedule.refresh_from_db()
    assert schedule.name == "mine"
    assert schedule.periodic_task.enabled


def test_turn_off_edit_and_see_runs_and_refusals_then_delete(
    alice: User, alice_client: Client, dispatched: list[int], settings: Any
) -> None:
    schedule = schedules.schedule_save(
        owner=alice,
        name="hourly",
        kind="burn",
        params={"chunks": 1, "ms": 1},
        timing=schedules.Timing(every=1, unit="hours"),
    )
    page = f"/schedules/{schedule.pk}/"
    alice_client.post(f"{page}toggle/", {"enabled": "0"})
    schedule.refresh_from_db()
    assert not schedule.periodic_task.enabled
    assert 'id="schedule-state">off' in alice_client.get(page).content.decode()

    edited = alice_client.post(
        page, {"name": "every 2 h", "how": "every", "every": 2, "unit": "hours", "timezone": "UTC"}
    )
    assert edited.status_code == 302
    schedule.refresh_from_db()
    assert schedule.name == "every 2 h"
    assert schedule.periodic_task.interval.every == 2

    run = schedules.schedule_fire(schedule_id=schedule.pk, fire_id="off")
    assert run is None, "a fire of a schedule turned off makes no run"
    schedules.schedule_set_enabled(schedule=schedule, enabled=True)
    run = schedules.schedule_fire(schedule_id=schedule.pk, fire_id="1")
    assert run is not None
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 1
    assert schedules.schedule_fire(schedule_id=schedule.pk, fire_id="2") is None
    body = alice_client.get(page).content.decode()
    assert f"#{run.pk}" in body
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in body
    assert "(scheduled)" in alice_client.get("/history/").content.decode()
    assert (
        f'href="/schedules/{schedule.pk}/">a schedule'
        in alice_client.get(f"/jobs/{run.pk}/").content.decode()
    )

    assert alice_client.post(f"{page}delete/").status_code == 302
    assert not Schedule.objects.exists()
    assert alice_client.get(f"/jobs/{run.pk}/").status_code == 200
