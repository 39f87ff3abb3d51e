"""A job's priority on the new-job form, the job page, the history and rerun (issue 23)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from jobs.models import Job
from tests.factories import client_for, make_job

pytestmark = [pytest.mark.pages, pytest.mark.django_db]

PRIMES = {"kind": "primes", "params-start": "0", "params-stop": "1000", "params-chunks": "4"}


def test_the_form_offers_urgent_only_to_people_staff_allowed(
    alice: User, alice_client: Client
) -> None:
    form = alice_client.get("/jobs/new/", {"kind": "primes"}).content.decode()
    assert 'name="priority"' in form
    assert 'value="high"' in form
    assert '<option value="normal" selected>' in form
    assert 'value="urgent"' not in form
    # Posted anyway: refused beside the field, nothing created.
    refused = alice_client.post("/jobs/new/", {**PRIMES, "priority": "urgent"})
    assert refused.status_code == 400
    assert "Must be one of low, normal, high, urgent" in refused.content.decode()
    assert not Job.objects.exists()
    alice.user_permissions.add(Permission.objects.get(codename="submit_urgent"))
    allowed = client_for(User.objects.get(pk=alice.pk))
    assert 'value="urgent"' in allowed.get("/jobs/new/", {"kind": "primes"}).content.decode()
    assert allowed.post("/jobs/new/", {**PRIMES, "priority": "urgent"}).status_code == 302
    assert Job.objects.get().priority == Job.Priority.URGENT


def test_the_job_page_history_and_rerun_show_the_priority(alice_client: Client) -> None:
    assert alice_client.post("/jobs/new/", {**PRIMES, "priority": "high"}).status_code == 302
    job = Job.objects.get()
    assert job.priority == Job.Priority.HIGH
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert '<dd id="priority-value">High</dd>' in page
    history = alice_client.get("/history/").content.decode()
    assert "high priority</span>" in history
    rerun = alice_client.get("/jobs/new/", {"rerun": job.pk}).content.decode()
    assert '<option value="high" selected>' in rerun


def test_a_normal_job_shows_no_priority_badge_in_history(alice: User, alice_client: Client) -> None:
    make_job(alice)
    assert "priority</span>" not in alice_client.get("/history/").content.decode()
