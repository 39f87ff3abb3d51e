"""Every database session gives up on a lock, and the server ends a session that went
quiet inside a transaction (project.settings COREBOARD_DB_*)."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError, connection, transaction

from jobs.engine import job_state
from tests.factories import hold_job_lock as _hold_job_lock
from tests.factories import make_unclaimable_job


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
