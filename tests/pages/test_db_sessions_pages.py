"""A job whose row another machine holds locked answers busy (503) on its page and in the
API, and changes nothing."""

from __future__ import annotations

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from jobs.models import Job
from tests.factories import hold_job_lock as _hold_job_lock
from tests.factories import make_unclaimable_job


@pytest.mark.pages
@pytest.mark.django_db(transaction=True)
def test_a_job_held_by_a_silent_machine_answers_busy_and_changes_nothing(
    alice: User, other_session: psycopg.Connection
) -> None:
    job = make_unclaimable_job(alice)
    client = Client()
    client.force_login(alice)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '100ms'")
    _hold_job_lock(other_session, job)
    try:
        page = client.post(f"/jobs/{job.pk}/cancel/")
        api = client.post(f"/api/jobs/{job.pk}/cancel/")
    finally:
        other_session.execute("ROLLBACK")
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert page.status_code == 503
    assert b"another machine holds it" in page.content
    assert page["Retry-After"] == "5"
    assert api.status_code == 503
    assert "another machine holds it" in api.json()["detail"]
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING
