"""A job's stored wall seconds and speedup (Job.finished_wall_seconds, finished_speedup,
migration 0009): set when the job finishes, equal to the properties, and never in the way of
the engine's updates of a running job, which stay heap-only (HOT: no index touched)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import connection

from jobs import kinds
from jobs.engine import chunks
from jobs.models import Job
from jobs.selectors import jobs as selectors
from tests.factories import claim, done, make_job, start

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def _probe_kind() -> Iterator[None]:
    """A kind no worker process has: only this test touches its jobs."""
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        yield


def _job_updates() -> tuple[int, int]:
    """(updates, heap-only updates) of jobs_job in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
            " WHERE relname = 'jobs_job'"
        )
        updates, hot = cursor.fetchone()
    return updates, hot


def _record_one_by_one(job: Job, count: int) -> tuple[int, int]:
    """Record `count` chunks of `job` done, one batch each: (updates, heap-only updates) of
    the job rows meanwhile."""
    claimed = claim(job, limit=count)
    assert len(claimed) == count
    before = _job_updates()
    for chunk in claimed:
        chunks.chunks_record(job_id=job.pk, outcomes=[done(chunk, cpu_seconds=0.25)])
    after = _job_updates()
    return after[0] - before[0], after[1] - before[1]


def test_a_running_jobs_record_updates_stay_heap_only(alice: User) -> None:
    from tests import kinds_probe

    # Room on the job's page for the row's new versions (rolled back with the test): HOT
    # also needs space on the same page, which is a matter of where the row landed, not
    # of the indexes that this test is about.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE jobs_job SET (fillfactor = 50)")
    job = make_job(alice, kinds_probe.NAME, chunks=6, ms=1)
    start(job)

    updates, hot = _record_one_by_one(job, 3)
    assert updates >= 3
    assert hot == updates  # cpu_seconds, done_chunks, version changed; no indexed value did
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert job.cpu_seconds == 0.75
    assert job.finished_wall_seconds is None
    assert job.finished_speedup is None

    # What the test would catch: an index on a value these updates change.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # DDL waits for no deferred check
        cursor.execute("CREATE INDEX test_job_cpu_seconds ON jobs_job (cpu_seconds)")
    updates, hot = _record_one_by_one(job, 1)
    assert updates >= 1
    assert hot == 0


def test_a_finished_job_stores_the_wall_seconds_and_speedup_its_properties_give(
    alice: User,
) -> None:
    from tests import kinds_probe

    job = make_job(alice, kinds_probe.NAME, chunks=2, ms=1)
    start(job)
    _record_one_by_one(job, 2)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.finished_at is not None
    assert job.started_at is not None
    wall = (job.finished_at - job.started_at).total_seconds()
    assert job.finished_wall_seconds == wall == job.wall_seconds
    assert job.finished_speedup == pytest.approx(0.5 / wall, rel=1e-12)
    assert job.finished_speedup == job.speedup


@pytest.mark.parametrize("sort", ["-duration", "duration", "-speedup", "speedup"])
def test_an_index_serves_each_duration_and_speedup_order(alice: User, sort: str) -> None:
    """With sorting off, PostgreSQL plans a sort only if no index has the order (blanks
    last in both directions, then the newest id)."""
    jobs = selectors.job_history(user=alice, sort=sort)[:25]
    query, params = jobs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {query}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert " Sort " not in f" {plan} ", plan
    assert "job_wall_" in plan or "job_speedup_" in plan, plan


def test_active_jobs_sorted_by_duration_are_listed_newest_first(alice: User) -> None:
    """They have no duration: the order is the tiebreak alone, not a walk of the index."""
    from tests import kinds_probe

    made = [make_job(alice, kinds_probe.NAME, chunks=2, ms=1) for _ in range(3)]
    for job in made[:2]:
        start(job)
    for sort in ("-duration", "speedup"):
        running = selectors.job_history(user=alice, status=Job.Status.RUNNING, sort=sort)
        assert running.query.order_by == ("-id",)
        assert [job.pk for job in running] == [made[1].pk, made[0].pk]
