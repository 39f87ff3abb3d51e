"""What a worker machine may touch: the worker's PostgreSQL role and its Redis ACL user.

A worker runs people's code next to its credentials, and worker machines are many: their
credentials must not be the keys to the site. So workers log in to PostgreSQL as a role
(`coreboard_worker`) granted exactly the tables in `WORKER_TABLE_GRANTS`, and nothing on
auth, sessions, tokens, axes or the admin log; and to Redis as a user (`coreboard-worker`)
that cannot reach the cache's database (throttles, login lockouts, pickled values), nor run
administrative commands (docs/security.md says what that does and does not limit).

Applied to the embedded services by `make run` (launcher.stack), to the test suite's
workers (tests.processes), and printed for servers the operator runs
(`python -m launcher.least_privilege`). Applying is idempotent and revokes whatever the
role held before (an upgrade from the broad grants of earlier versions), in one
transaction: a worker never sees a moment without its grants.

Nothing here imports Django (the launcher runs before settings exist), so the tables are
named as PostgreSQL names them; tests/services/test_least_privilege.py checks each name
against the models, and tests/integration/test_least_privilege.py runs every kind on a
real worker logged in as the role.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

WORKER_ROLE = "coreboard_worker"
WORKER_REDIS_USER = "coreboard-worker"


@dataclass(frozen=True)
class TableGrant:
    """One table the worker role may use, with what, and the worker code that needs it."""

    table: str
    privileges: tuple[str, ...]
    why: str


# Every table the worker processes use (the Celery main process: preflight, reconciler,
# samplers; its prefork children: slots, bookkeeping, combine; and the services the engine's
# signals call there: studies' advance). A table missing here is a permission error on the
# worker; tests/integration/test_least_privilege.py runs every kind to find one.
# SELECT is needed beside UPDATE and INSERT for WHERE clauses, FOR UPDATE and RETURNING;
# identity columns need no grant on their sequences. Foreign keys (the owner, auth_user) are
# checked by PostgreSQL as the table's owner, so inserting a job needs no access to auth_user.
WORKER_TABLE_GRANTS: tuple[TableGrant, ...] = (
    TableGrant(
        "jobs_job",
        ("SELECT", "INSERT", "UPDATE"),
        "claims, records and finishes jobs (engine); a scaling study's next run (INSERT)",
    ),
    TableGrant(
        "jobs_chunk",
        ("SELECT", "INSERT", "UPDATE"),
        "claims, leases, records chunks (engine); the chunks of a study's next run (INSERT)",
    ),
    TableGrant(
        "jobs_scalingstudy",
        ("SELECT", "UPDATE"),
        "advancing and ending scaling studies (reconciler pass, job_finished signal)",
    ),
    TableGrant(
        "jobs_processsample",
        ("SELECT", "INSERT"),
        "the process sampler's CPU and memory samples (INSERT ... RETURNING id)",
    ),
    TableGrant(
        "jobs_upload",
        ("SELECT",),
        "resolving an upload id to its stored file when a study's run splits it",
    ),
    TableGrant(
        "jobs_schedule",
        ("SELECT", "UPDATE"),
        "a schedule's fire: its run's parameters, its last fire and refusal (a worker task)",
    ),
    TableGrant(
        "django_celery_beat_periodictask",
        ("SELECT",),
        "a schedule's fire: whether it was turned off since beat sent it (celery beat "
        "itself, which writes this table, runs with the owner's account on the main machine)",
    ),
    TableGrant(
        "django_migrations",
        ("SELECT",),
        "the worker's preflight: schema up to date, this database's identity",
    ),
    TableGrant(
        "jobs_notificationsettings",
        ("SELECT",),
        "who wants which notifications, and their e-mail address (a job's end)",
    ),
    TableGrant(
        "jobs_webhook",
        ("SELECT",),
        "the webhooks a job's end is posted to, and their signing secrets",
    ),
    TableGrant(
        "jobs_notificationdelivery",
        ("SELECT", "INSERT", "UPDATE"),
        "the notification outbox written with a job's end, its sending and delivery log",
    ),
)

# Tables of the jobs app that workers never touch: a new model there must be named in one
# list or the other (tests/services/test_least_privilege_services.py), a choice made when
# it is added rather than found by a worker's permission error.
WEB_ONLY_JOB_TABLES: tuple[str, ...] = (
    # An upload's quota reservation while its file is written: only the web stores uploads.
    "jobs_uploadreservation",
    # Sweeps are created, read and cancelled by the web; a worker reads and writes a sweep's
    # jobs as any other job (their sweep_id and sweep_index it never changes).
    "jobs_sweep",
)

# What the workers' Redis user may do, as ACL SETUSER rules after `reset`: every key and
# channel (Celery's queues, kombu's bindings and pidbox, the slot and worker registries and
# the channel layer share databases 0 and 1 with the web, under names the operator may
# choose), every command but the dangerous ones (CONFIG, FLUSHALL, KEYS, MONITOR, ACL,
# SHUTDOWN, DEBUG, ...), databases 0 (broker, registries) and 1 (channel layer) only: not 2,
# the cache, whose values Django unpickles. MOVE and COPY ... DB would write into database
# 2 without SELECT, so they go too, as do functions (global across databases).
WORKER_REDIS_RULES: tuple[str, ...] = (
    "~*",
    "&*",
    "+@all",
    "-@dangerous",
    "-move",
    "-copy",
    "-function",
    "-fcall",
    "-fcall_ro",
    "-select",
    "+select|0",
    "+select|1",
)


def grant_statements(*, role: str, owner: str, database: str, tables: Sequence[str]) -> list[str]:
    """The SQL that leaves `role` with exactly WORKER_TABLE_GRANTS on `database`, for the
    tables of the list that exist (`tables`: all of them, when printing for an operator).

    It first takes back every privilege on the schema's tables and sequences, and the
    default privileges `owner` granted on future tables (the broad grants of earlier
    versions), so nothing the list does not name survives an upgrade."""
    quote = _identifier
    role_q, owner_q = quote(role), quote(owner)
    statements = [
        f"ALTER ROLE {role_q} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        "NOBYPASSRLS",
        f"GRANT CONNECT ON DATABASE {quote(database)} TO {role_q}",
        f"GRANT USAGE ON SCHEMA public TO {role_q}",
        f"REVOKE CREATE ON SCHEMA public FROM {role_q}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role_q}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role_q}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_q} IN SCHEMA public "
        f"REVOKE ALL ON TABLES FROM {role_q}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_q} IN SCHEMA public "
        f"REVOKE ALL ON SEQUENCES FROM {role_q}",
    ]
    present = set(tables)
    statements += [
        f"GRANT {', '.join(grant.privileges)} ON TABLE {quote(grant.table)} TO {role_q}"
        for grant in WORKER_TABLE_GRANTS
        if grant.table in present
    ]
    return statements


def postgres_worker_role_ensure(admin_url: str, *, password: str, role: str = WORKER_ROLE) -> None:
    """Create or update the worker role (login with `password`) and leave it exactly
    WORKER_TABLE_GRANTS on the database `admin_url` names, through `admin_url` (a role that
    may create roles and owns the tables, e.g. the embedded cluster's superuser).

    Tables of the list that the database lacks (a schema older than the code) are skipped:
    the worker's preflight names the missing migrations."""
    # Imported here: psycopg costs ~0.2 s and most launcher commands never talk to
    # PostgreSQL themselves (not a cycle: psycopg is a library).
    import psycopg

    with psycopg.connect(admin_url, connect_timeout=5) as conn, conn.transaction():
        owner, database = conn.execute("SELECT current_user, current_database()").fetchone() or (
            "",
            "",
        )
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            conn.execute(f"CREATE ROLE {_identifier(role)} LOGIN")
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        for statement in grant_statements(role=role, owner=owner, database=database, tables=tables):
            conn.execute(statement.encode())
        _role_password_set(conn, role, password)


def _role_password_set(
    conn: psycopg.Connection[tuple[object, ...]], role: str, password: str
) -> None:
    from psycopg import sql

    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
    )


def redis_worker_user_ensure(
    admin_url: str, *, password: str, user: str = WORKER_REDIS_USER
) -> bool:
    """Create or reset the workers' Redis ACL user (WORKER_REDIS_RULES, `password`) through
    `admin_url` (the default user's URL); False when the server has no ACLs (Redis before
    6), in which case workers use the default user's password as before."""
    import redis

    client = redis.Redis.from_url(admin_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        # As printed for operators (main), rather than redis-py's acl_setuser, which
        # reorders the rules by kind.
        client.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", user, "reset", "on", f">{password}", *WORKER_REDIS_RULES
        )
    except redis.ResponseError as error:
        if "unknown command" in str(error).lower():
            return False
        raise
    finally:
        client.close()
    return True


def with_credentials(url: str, *, user: str, password: str) -> str:
    """`url` with its user and password replaced (host, port, path and query kept)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{credentials}@{host}"))


def _identifier(name: str) -> str:
    """A PostgreSQL identifier, quoted (the statements are also printed for operators)."""
    return '"' + name.replace('"', '""') + '"'


def main(argv: Sequence[str] | None = None) -> int:
    """Print the SQL and the Redis ACL rule for servers the operator runs."""
    parser = argparse.ArgumentParser(
        prog="python -m launcher.least_privilege",
        description=(
            "Print the statements that give Coreboard's workers only what they need: run the "
            "SQL as the owner of Coreboard's tables after every migrate, and the ACL rule on "
            "Redis (6 or later); then give workers a DATABASE_URL and REDIS_URL with these "
            "accounts (docs/operations.md)."
        ),
    )
    parser.add_argument("--role", default=WORKER_ROLE, help="the worker's PostgreSQL role")
    parser.add_argument("--owner", default="coreboard", help="the role that owns the tables")
    parser.add_argument("--database", default="coreboard", help="Coreboard's database")
    parser.add_argument("--redis-user", default=WORKER_REDIS_USER, help="the workers' Redis user")
    args = parser.parse_args(argv)
    print(f"-- PostgreSQL, as {args.owner} in {args.database} (CREATE ROLE first if needed):")
    print(f"CREATE ROLE {_identifier(args.role)} LOGIN PASSWORD '<a password>';  -- once")
    print(
        "-- PostgreSQL before 15 lets every role create in schema public (CVE-2018-1058): as\n"
        f"-- its owner, GRANT CREATE ON SCHEMA public TO {_identifier(args.owner)}; then\n"
        "-- REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
    )
    tables = [grant.table for grant in WORKER_TABLE_GRANTS]
    for statement in grant_statements(
        role=args.role, owner=args.owner, database=args.database, tables=tables
    ):
        print(f"{statement};")
    print("\n# Redis 6 or later (redis-cli as the default user):")
    print(f"ACL SETUSER {args.redis_user} reset on ><a password> {' '.join(WORKER_REDIS_RULES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
