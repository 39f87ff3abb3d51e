"""Scaling studies on the pages: the button, creating one, refusals, and who sees it."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import ScalingStudy
from jobs.services import studies
from tests.factories import make_job, workers_alive
from tests.factories import succeeded_job as _succeeded

pytestmark = pytest.mark.django_db


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
def test_cancelling_a_study_asks_first_and_changes_nothing_until_confirmed(
    alice: User, alice_client: Client, dispatched: list[int]
) -> None:
    study = studies.study_create(owner=alice, job=_succeeded(alice), processes=2)
    cancel = reverse("jobs:study-cancel", args=[study.pk])
    page = alice_client.get(reverse("jobs:study", args=[study.pk])).content.decode()
    assert f'id="study-cancel-link" href="{cancel}"' in page
    confirm = alice_client.get(cancel).content.decode()
    assert f"<h1>Cancel scaling study #{study.pk}?</h1>" in confirm
    assert f'<form method="post" action="{cancel}"' in confirm
    study.refresh_from_db()
    assert study.status == ScalingStudy.Status.RUNNING
    alice_client.post(cancel)
    ended = alice_client.get(cancel).content.decode()
    assert f"Scaling study #{study.pk} has already ended: it is cancelled." in ended
