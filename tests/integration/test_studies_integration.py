"""A scaling study run to the end by a real prefork worker."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import User

from jobs import protocol
from jobs.models import ScalingStudy
from jobs.selectors import studies as study_selectors
from jobs.services import studies
from tests.factories import make_job
from tests.factories import study_run as _run

pytestmark = pytest.mark.django_db


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_study_of_a_primes_job_runs_to_the_end_on_two_processes(alice: User) -> None:
    from tests.waiting import poll_until, wait_for_job

    params: dict[str, Any] = {"start": 0, "stop": 30_000_000, "chunks": 8}
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
    # The study's speedup at p = 2 is the run's own, as its page, the API and the CSV show it.
    run2.refresh_from_db()
    assert (run2.speedup_baseline, run2.baseline_job_id) == ("measured", run1.pk)
    assert protocol.job_state(run2)["speedup"] == pytest.approx(float(rows[1]["speedup"]), abs=1e-4)
