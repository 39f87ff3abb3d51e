"""No machine can freeze the cluster: every database session gives up on a lock, and the
server ends a session that went quiet inside a transaction (project.settings COREBOARD_DB_*).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError, connection, transaction
from django.test import Client

from coreconf import paths
from jobs.engine import job_state
from jobs.models import Chunk, Job
from tests.factories import make_job, make_unclaimable_job
from tests.processes import start_celery_worker
from tests.waiting import poll_until

FROZEN_NODE_RECOVERY_S = 30


def _session_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return str(cursor.fetchone()[0])


@pytest.mark.services
@pytest.mark.django_db
def test_every_session_bounds_lock_waits_and_idle_transactions() -> None:
    assert _session_setting("lock_timeout") == "5s"
    assert _session_setting("idle_in_transaction_session_timeout") == "20s"
    assert _session_setting("tcp_keepalives_idle") == "10"
    assert settings.DATABASES["default"]["OPTIONS"]["keepalives"] == 1


@pytest.fixture
def other_session() -> Iterator[psycopg.Connection]:
    """A second session, as another machine would hold."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    with psycopg.connect(**params) as other:
        yield other


def _hold_job_lock(session: psycopg.Connection, job: Job) -> None:
    """Lock the job's row from another session, as a machine in mid-transaction does."""
    session.execute("BEGIN")
    session.execute("SELECT 1 FROM jobs_job WHERE id = %s FOR UPDATE", [job.pk])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_waiting_for_a_held_job_lock_retries_then_gives_up(
    alice: User, other_session: psycopg.Connection
) -> None:
    job = make_unclaimable_job(alice)
    tries = 0

    def lock_the_job() -> None:
        nonlocal tries
        tries += 1
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '50ms'")
            job_state.job_lock(job.pk)

    _hold_job_lock(other_session, job)
    started = time.monotonic()
    with pytest.raises(OperationalError) as raised:
        job_state.retry_on_lock_timeout(lock_the_job, patience_s=0.6)
    assert job_state.is_lock_timeout(raised.value)
    assert tries >= 3
    assert time.monotonic() - started < 2

    other_session.execute("ROLLBACK")
    job_state.retry_on_lock_timeout(lock_the_job, patience_s=0.6)


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


def _done(job_id: int) -> int:
    return Job.objects.values_list("done_chunks", flat=True).get(pk=job_id)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_node_frozen_while_holding_a_job_lock_stalls_nobody_for_long(
    alice: User, child_env: dict[str, str]
) -> None:
    """A machine partitioned mid-transaction is, to PostgreSQL, a session idle in a
    transaction that never speaks again: a process that takes a job's lock with the
    project's settings and is then stopped (SIGSTOP) looks exactly like that."""
    other_node = start_celery_worker(child_env, concurrency=2)
    frozen: subprocess.Popen[str] | None = None
    try:
        busy = make_job(alice, chunks=400, ms=50, parallelism=4, committed=True)
        poll_until(lambda: _done(busy.pk) >= 4, timeout=60)
        frozen = subprocess.Popen(
            [sys.executable, "-c", _FREEZE_HOLDING_LOCK, str(busy.pk)],
            cwd=paths.BASE_DIR,
            env=child_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert frozen.stdout is not None
        assert frozen.stdout.readline().strip() == "locked"
        frozen_at = time.monotonic()
        unrelated = make_job(alice, chunks=8, ms=50, parallelism=2, committed=True)
        done_when_frozen = _done(busy.pk)

        poll_until(
            lambda: _done(busy.pk) > done_when_frozen and _done(unrelated.pk) > 0,
            timeout=FROZEN_NODE_RECOVERY_S,
        )
        recovered_after = time.monotonic() - frozen_at
        poll_until(
            lambda: Job.objects.get(pk=unrelated.pk).status == Job.Status.SUCCEEDED, timeout=60
        )
    finally:
        if frozen is not None:
            frozen.kill()
            frozen.wait()
        other_node.stop()
        Job.objects.filter(status__in=Job.ACTIVE_STATUSES).update(status=Job.Status.CANCELLED)
        Chunk.objects.filter(status=Chunk.Status.PENDING).update(status=Chunk.Status.CANCELLED)
    assert recovered_after < FROZEN_NODE_RECOVERY_S


_FREEZE_HOLDING_LOCK = """
import os, signal, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()
from django.db import transaction
from jobs.engine.job_state import job_lock
with transaction.atomic():
    job_lock(int(sys.argv[1]))
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""
