"""A job's pace (jobs.selectors.jobs.job_pace): chunks per second and the time left."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from jobs.models import Job
from jobs.selectors import jobs as selectors
from tests.factories import make_job

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def test_a_running_jobs_pace_is_over_the_time_so_far(alice: User) -> None:
    job = make_job(alice, chunks=10)
    now = timezone.now()
    job.started_at, job.done_chunks, job.status = now - timedelta(seconds=4), 4, Job.Status.RUNNING
    pace = selectors.job_pace(job, now=now)
    assert pace["throughput"] == 1.0
    assert pace["eta_seconds"] == 6.0


def test_an_ended_jobs_pace_stays_put_as_the_clock_moves_on(alice: User) -> None:
    job = make_job(alice, chunks=10)
    now = timezone.now()
    job.status, job.done_chunks = Job.Status.SUCCEEDED, 10
    job.started_at, job.finished_at = now - timedelta(seconds=60), now - timedelta(seconds=55)
    paces = [selectors.job_pace(job, now=now + timedelta(seconds=s)) for s in (0, 30, 600)]
    assert [pace["throughput"] for pace in paces] == [2.0, 2.0, 2.0]
    assert all(pace["eta_seconds"] is None for pace in paces)
