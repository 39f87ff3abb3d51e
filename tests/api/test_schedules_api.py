"""The schedules API: a person's own schedules, errors by field, nothing changed on a refusal."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from jobs.models import Job, Schedule
from jobs.services import schedules
from tests.factories import make_job

pytestmark = [pytest.mark.api, pytest.mark.django_db]

URL = "/api/schedules/"
HOURLY: dict[str, Any] = {
    "name": "hourly burn",
    "kind": "burn",
    "params": {"chunks": 2, "ms": 1},
    "every": 1,
    "unit": "hours",
}


def test_create_by_interval_then_read_it_back(alice_api: APIClient) -> None:
    response = alice_api.post(URL, HOURLY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["every"] == 1
    assert body["unit"] == "hours"
    assert body["cron"] is None
    assert body["enabled"] is True
    assert body["runs"] == 0
    next_run = datetime.fromisoformat(body["next_run_at"]) - timezone.now()
    assert timedelta(minutes=59) < next_run <= timedelta(hours=1)
    task = PeriodicTask.objects.get(coreboard__pk=body["id"])
    assert task.task == schedules.FIRE_TASK
    assert task.interval is not None
    assert task.expire_seconds == 3600
    assert alice_api.get(f"{URL}{body['id']}/").json() == body


def test_create_from_a_job_by_cron_in_a_time_zone(alice: User, alice_api: APIClient) -> None:
    job = make_job(alice, "burn", chunks=3, ms=2)
    response = alice_api.post(
        URL, {"job": job.pk, "cron": "30 2 * * 1-5", "timezone": "Europe/Paris"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["params"], body["source_job"]) == ("burn", job.params, job.pk)
    assert (body["cron"], body["timezone"], body["every"]) == ("30 2 * * 1-5", "Europe/Paris", None)
    task = PeriodicTask.objects.get(coreboard__pk=body["id"])
    assert str(task.crontab.timezone) == "Europe/Paris"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *", "every": None}, "cron"),
        ({"cron": "* * *", "every": None}, "cron"),
        ({"cron": "0 3 * * *"}, "cron"),  # and every: both given
        ({"every": None}, "cron"),  # neither
        ({"every": 10, "unit": "seconds"}, "every"),  # below COREBOARD_SCHEDULE_MIN_INTERVAL_S
        ({"every": 0}, "every"),
        ({"every": True}, "every"),
        ({"unit": "fortnights"}, "unit"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"kind": "nope"}, "kind"),
        ({"params": {"chunks": -1}}, "params"),
        ({"params": {"chunks": 2, "extra": 1}}, "params"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    alice_api: APIClient, change: dict[str, Any], field: str
) -> None:
    response = alice_api.post(URL, {**HOURLY, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.exists()


def test_nobody_sees_or_touches_another_persons_schedule(
    alice_api: APIClient, mallory_api: APIClient, staff: User
) -> None:
    created = alice_api.post(URL, HOURLY, format="json").json()
    one = f"{URL}{created['id']}/"
    assert mallory_api.get(URL).json()["results"] == []
    assert mallory_api.get(one).status_code == 404
    assert mallory_api.patch(one, {"enabled": False}, format="json").status_code == 404
    assert mallory_api.delete(one).status_code == 404
    staff_api = APIClient()
    staff_api.force_authenticate(staff)
    assert staff_api.get(one).status_code == 404
    assert PeriodicTask.objects.get(coreboard__pk=created["id"]).enabled


def test_nobody_schedules_another_persons_job(bob: User, alice_api: APIClient, staff: User) -> None:
    job = make_job(bob, "burn")
    response = alice_api.post(URL, {"job": job.pk, "every": 1}, format="json")
    assert response.status_code == 400
    assert "job" in response.json()


def test_patch_turns_off_and_changes_timing_then_delete_keeps_runs(
    alice: User, alice_api: APIClient, dispatched: list[int]
) -> None:
    created = alice_api.post(URL, HOURLY, format="json").json()
    one = f"{URL}{created['id']}/"
    off = alice_api.patch(one, {"enabled": False}, format="json")
    assert off.status_code == 200
    assert off.json()["enabled"] is False
    assert off.json()["every"] == 1
    assert off.json()["next_run_at"] is None
    cron = alice_api.patch(one, {"cron": "0 * * * *"}, format="json").json()
    assert (cron["cron"], cron["every"], cron["enabled"]) == ("0 * * * *", None, False)
    bad = alice_api.patch(one, {"timezone": "Nowhere"}, format="json")
    assert bad.status_code == 400
    assert "timezone" in bad.json()
    assert alice_api.get(one).json()["timezone"] == "UTC"

    schedules.schedule_set_enabled(schedule=Schedule.objects.get(), enabled=True)
    run = schedules.schedule_fire(schedule_id=created["id"], fire_id="m1")
    assert run is not None
    assert alice_api.get(one).json()["last_run"] == run.pk
    assert alice_api.delete(one).status_code == 204
    assert not PeriodicTask.objects.exists()
    assert Job.objects.get(pk=run.pk).schedule is None


def test_schedules_per_person_are_capped(alice_api: APIClient, settings: Any) -> None:
    settings.COREBOARD_QUOTA_SCHEDULES = 1
    assert alice_api.post(URL, HOURLY, format="json").status_code == 201
    response = alice_api.post(URL, HOURLY, format="json")
    assert response.status_code == 400
    assert "COREBOARD_QUOTA_SCHEDULES" in response.json()["schedules"][0]
    assert PeriodicTask.objects.count() == 1
