"""Workers' least privilege (launcher.least_privilege): the worker role logs in and is
refused auth, sessions and tokens, the workers' Redis user is refused the cache, and a real
prefork worker logged in with both still runs every built-in kind, uploads and scaling
studies included."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import psutil
import psycopg
import pytest
import redis
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from psycopg import errors

from jobs import kinds, services
from jobs.models import Job, ScalingStudy
from jobs.services import studies
from launcher import least_privilege
from tests.factories import generated_text, make_job
from tests.processes import ServerProcess, start_celery_worker, worker_env
from tests.waiting import poll_until, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The tables whose rows are the keys to the site: who people are, their sessions, tokens.
SITE_KEYS = ("auth_user", "django_session", "tokens_apitoken")
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
# Small parameters for each kind that ships in jobs.kinds (an upload id is added for those
# that read one); the test fails when a built-in kind is missing here.
BUILT_IN_PARAMS: dict[str, dict[str, Any]] = {
    "burn": {"chunks": 4, "ms": 20},
    "hash_search": {"prefix": "x", "difficulty": 2, "chunks": 4},
    "mandelbrot": {"width": 64, "height": 48, "max_iter": 50, "chunks": 4},
    "montecarlo_pi": {"samples": 20_000, "chunks": 4},
    "primes": {"start": 0, "stop": 100_000, "chunks": 4},
    "wordcount": {"chunks": 4, "top": 3},
}


def _user(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).username or "")


@pytest.fixture
def role_url(child_env: dict[str, str]) -> str:
    """The DATABASE_URL the suite's workers get: the worker role's, on the test database."""
    url = worker_env(child_env)["DATABASE_URL"]
    assert _user(url) == least_privilege.WORKER_ROLE
    return url


def test_the_worker_role_cannot_read_or_write_auth_sessions_or_tokens(role_url: str) -> None:
    # The probe's attack, a token row minted for the admin, among the refusals.
    attempts = {
        "auth_user": "UPDATE auth_user SET is_superuser = true",
        "django_session": "DELETE FROM django_session",
        "tokens_apitoken": (
            "INSERT INTO tokens_apitoken (user_id, name, prefix, digest, created_at) "
            "VALUES (1, 'minted', 'x', 'x', now())"
        ),
    }
    with psycopg.connect(role_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (least_privilege.WORKER_ROLE,)
        for table in SITE_KEYS:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 - our table names
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(attempts[table].encode())
        # Nor may it make a table of its own, or give itself more.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE mine (id int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"GRANT SELECT ON auth_user TO {least_privilege.WORKER_ROLE}")


@pytest.mark.usefixtures("role_url")
def test_the_worker_role_holds_exactly_the_grant_list() -> None:
    """Every privilege on every table of the database, as PostgreSQL reports it, is one
    that WORKER_TABLE_GRANTS names: nothing on auth, sessions, tokens, axes or the admin
    log, and no default privileges that would hand it tables a later migration adds."""
    granted = {
        (grant.table, privilege)
        for grant in least_privilege.WORKER_TABLE_GRANTS
        for privilege in grant.privileges
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        held = set()
        for table in tables:
            for privilege in PRIVILEGES:
                cursor.execute(
                    "SELECT has_table_privilege(%s, %s, %s)",
                    [least_privilege.WORKER_ROLE, f'public."{table}"', privilege],
                )
                if cursor.fetchone()[0]:
                    held.add((table, privilege))
        cursor.execute(
            "SELECT count(*) FROM pg_default_acl WHERE array_to_string(defaclacl, ',') LIKE %s",
            [f"%{least_privilege.WORKER_ROLE}=%"],
        )
        defaults = cursor.fetchone()[0]
    assert set(SITE_KEYS) <= set(tables)
    assert held == granted
    assert defaults == 0


def test_the_workers_redis_user_cannot_reach_the_cache_or_administer(
    child_env: dict[str, str],
) -> None:
    url = worker_env(child_env)["REDIS_URL"]
    assert _user(url) == least_privilege.WORKER_REDIS_USER
    client = redis.Redis.from_url(url)
    try:
        assert client.ping()
        client.set("coreboard:least-privilege-test", "1", ex=60)
        for command in (
            ("SELECT", "2"),  # the cache: throttles, lockouts, values Django unpickles
            ("MOVE", "coreboard:least-privilege-test", "2"),
            ("COPY", "coreboard:least-privilege-test", "x", "DB", "2"),
            ("CONFIG", "GET", "requirepass"),
            ("FLUSHALL",),
            ("KEYS", "*"),
            ("ACL", "SETUSER", least_privilege.WORKER_REDIS_USER, "+@all"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.delete("coreboard:least-privilege-test")
        client.close()


@pytest.fixture
def role_worker(child_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A prefork worker (two processes) with every built-in kind, the docs' example kind
    and the test function kinds, started as the suite starts every worker."""
    from tests import kinds_function

    env = {
        **child_env,
        "COREBOARD_JOB_KINDS": f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_function",
    }
    with kinds_function.registered():
        worker = start_celery_worker(env, concurrency=2)
        try:
            yield worker
        finally:
            worker.stop()


def test_a_worker_logged_in_as_the_worker_role_runs_every_kind(
    alice: User, role_worker: ServerProcess
) -> None:
    from tests import kinds_function

    environ = psutil.Process(role_worker.process.pid).environ()
    assert _user(environ["DATABASE_URL"]) == least_privilege.WORKER_ROLE
    assert _user(environ["REDIS_URL"]) == least_privilege.WORKER_REDIS_USER
    built_in = {k.name for k in kinds.all_kinds() if k.name in BUILT_IN_PARAMS}
    assert built_in == set(BUILT_IN_PARAMS), "a built-in kind needs parameters here"
    text = generated_text(5_000)
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("words.txt", text.encode())
    )
    wanted = {
        **{name: params for name, params in BUILT_IN_PARAMS.items()},
        "wordcount": {**BUILT_IN_PARAMS["wordcount"], "upload": upload.pk},
        kinds_function.NAME: {"text": upload.pk, "chunks": 3},
        kinds_function.SCALED_NAME: {"values": [1.0, 2.5, -3.0], "factor": 2.0, "chunks": 3},
    }
    jobs = {
        name: make_job(alice, name, parallelism=2, committed=True, **params)
        for name, params in wanted.items()
    }
    # A chunk that raises: retries, the failure recorded, the job failed, the rest cancelled.
    failing = make_job(alice, chunks=2, ms=10, fail_rate=1, parallelism=1, committed=True)
    try:
        ended = {
            name: wait_for_job(job.pk, until={"succeeded", "failed", "cancelled"}, timeout=120)
            for name, job in jobs.items()
        }
    except TimeoutError:
        pytest.fail(f"a job did not end; the worker said:\n{role_worker.output()[-6000:]}")
    assert {name: job.status for name, job in ended.items()} == dict.fromkeys(
        wanted, Job.Status.SUCCEEDED
    ), {name: job.error for name, job in ended.items()}
    assert ended["mandelbrot"].result_file
    failed = wait_for_job(failing.pk, until={"succeeded", "failed", "cancelled"}, timeout=120)
    assert failed.status == Job.Status.FAILED
    assert failed.chunks.filter(failures__gt=0).exists()
    # A scaling study: its next run is created by the worker (the run's end, the reconciler).
    study = studies.study_create(owner=alice, job=ended["primes"], processes=2)

    def ended_study() -> ScalingStudy | None:
        study.refresh_from_db()
        return None if study.is_active else study

    poll_until(ended_study, timeout=120)
    assert study.status == ScalingStudy.Status.SUCCEEDED, study.error
    assert study.runs.count() == 2
    # The worker's sessions are the role's, and it met no refusal anywhere (its reconciler
    # and samplers log what they cannot do rather than fail a job).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
            [least_privilege.WORKER_ROLE],
        )
        assert cursor.fetchone()[0] > 0
    output = role_worker.output().lower()
    assert "permission denied" not in output
    assert "noperm" not in output
