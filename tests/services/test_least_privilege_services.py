"""The worker role's grant list (launcher.least_privilege) against the models, and applying
it over an installation that had the broad grants of earlier versions."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from django.apps import apps
from django.db import connection

from launcher import least_privilege

pytestmark = pytest.mark.services

GRANTED = {grant.table for grant in least_privilege.WORKER_TABLE_GRANTS}
# Tables that are not a model's but that workers read.
NOT_MODELS = {"django_migrations"}
# Tables of other apps that workers read: a schedule's PeriodicTask (django-celery-beat), to
# drop a fire of a schedule turned off since beat sent it. Timing only, no person's data.
OTHER_APPS_GRANTED = {"django_celery_beat_periodictask"}


def _admin_url() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def test_every_table_in_the_grant_list_is_a_models_table() -> None:
    tables = {model._meta.db_table for model in apps.get_models()} | NOT_MODELS
    assert tables >= GRANTED, GRANTED - tables


def test_every_table_of_the_jobs_app_is_granted_or_declared_web_only() -> None:
    jobs_tables = {
        model._meta.db_table
        for model in apps.get_app_config("jobs").get_models(include_auto_created=True)
    }
    web_only = set(least_privilege.WEB_ONLY_JOB_TABLES)
    assert not web_only & GRANTED
    assert jobs_tables - GRANTED - web_only == set()


def test_no_table_outside_the_jobs_app_is_granted() -> None:
    """Auth, sessions, tokens, axes, the admin log, content types: none of theirs."""
    others = {
        model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label != "jobs"
    }
    assert {"auth_user", "django_session", "tokens_apitoken"} <= others
    assert others & GRANTED == OTHER_APPS_GRANTED


def test_no_statement_grants_default_privileges() -> None:
    """Default privileges would hand the role every table a later migration adds."""
    statements = least_privilege.grant_statements(
        role="w", owner="o", database="d", tables=sorted(GRANTED)
    )
    assert [s for s in statements if "DEFAULT PRIVILEGES" in s and " GRANT " in s] == []
    assert not any("ALL TABLES" in s and s.startswith("GRANT") for s in statements)


@pytest.fixture
def old_role() -> Iterator[str]:
    """A worker role as earlier versions left it: every privilege on every table and
    sequence, and default privileges on future ones."""
    role = f"cb_worker_upgrade_{secrets.token_hex(3)}"
    with psycopg.connect(_admin_url(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        admin.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        admin.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        )
    yield role
    with psycopg.connect(_admin_url(), autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")


@pytest.mark.django_db(transaction=True)
def test_applying_takes_back_what_earlier_versions_granted(old_role: str) -> None:
    least_privilege.postgres_worker_role_ensure(_admin_url(), password="p", role=old_role)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s",
            [old_role],
        )
        held = set(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM information_schema.role_usage_grants WHERE grantee = %s",
            [old_role],
        )
        sequences = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM pg_default_acl WHERE array_to_string(defaclacl, ',') LIKE %s",
            [f"%{old_role}=%"],
        )
        defaults = cursor.fetchone()[0]
    assert held == {
        (grant.table, privilege)
        for grant in least_privilege.WORKER_TABLE_GRANTS
        for privilege in grant.privileges
    }
    assert sequences == 0
    assert defaults == 0


def test_worker_urls_keep_everything_but_the_credentials() -> None:
    assert (
        least_privilege.with_credentials(
            "postgresql://coreboard:secret@[::1]:5432/cb?sslmode=require",
            user="coreboard_worker",
            password="p@ss/word",
        )
        == "postgresql://coreboard_worker:p%40ss%2Fword@[::1]:5432/cb?sslmode=require"
    )
    assert (
        least_privilege.with_credentials(
            "redis://:secret@10.0.0.5:6379/0", user="coreboard-worker", password="w"
        )
        == "redis://coreboard-worker:w@10.0.0.5:6379/0"
    )


def test_the_printed_statements_are_the_applied_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """What `python -m launcher.least_privilege` prints for operators' own servers is what
    `make run` applies, and the Redis rule is the one the embedded Redis gets."""
    assert least_privilege.main(["--owner", "cb", "--database", "cbdb"]) == 0
    printed = capsys.readouterr().out.splitlines()
    applied = least_privilege.grant_statements(
        role=least_privilege.WORKER_ROLE, owner="cb", database="cbdb", tables=sorted(GRANTED)
    )
    assert [f"{statement};" for statement in applied] == [
        line for line in printed if line.split(" ", 1)[0] in {"ALTER", "GRANT", "REVOKE"}
    ]
    assert printed[-1].endswith(" ".join(least_privilege.WORKER_REDIS_RULES))
