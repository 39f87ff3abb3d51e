"""Checks a worker makes before it takes any work, refusing to start when one fails.

Called from Celery's `worker_init` (jobs.engine.tasks), in the worker's main process, before the
pool forks. A worker that joined the wrong database schema, the wrong media directory or
another worker's identity would otherwise fail or corrupt other people's jobs quietly:

- **schema**: the database must have exactly the migrations this code has (behind: the
  main machine has not migrated; ahead: this checkout is older than the main machine's);
- **MEDIA_ROOT**: must hold the marker the main machine writes (`make run`, or
  `manage.py media_mark`) with this database's cluster id, so a worker with a local,
  unshared directory does not "succeed" a job whose result file nobody else can read;
- **node name**: no live worker main process elsewhere may hold it (node names are the
  identity the overview, drain and the slot registry use). The name is taken before
  Celery uses it (`node_name_take`): one held by another machine's worker (alive or
  partitioned) gives this worker `name-2`; one held by a live worker of this machine
  refuses it;
- **clock**: within CLOCK_MAX_SKEW_S of the database server's, since leases and heartbeats
  compare times written by different machines.

The cluster id is derived from the database itself (PostgreSQL's system identifier, the
database name and when this database's first Coreboard migration ran), so it needs no
table of its own and is as durable as the data. COREBOARD_SKIP_PREFLIGHT=1 starts a worker
anyway, for emergencies.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from jobs.engine import workers

MARKER_NAME = ".coreboard-cluster"
SKIP_ENV = "COREBOARD_SKIP_PREFLIGHT"
CLOCK_MAX_SKEW_S = 1.0
# EX_CONFIG: a supervisor (systemd, make run) sees a configuration error, not a crash.
EXIT_CODE = 78


class PreflightRefused(SystemExit):
    """The worker must not start; its message names the problems and their fixes."""


def cluster_id() -> str:
    """This database's identity, the same from every machine that reaches it."""
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                cursor.execute("SELECT system_identifier::text FROM pg_control_system()")
                system = str(cursor.fetchone()[0])
        except DatabaseError:
            # Some hosted services hide the control file; the rest still tells apart.
            system = ""
        cursor.execute(
            "SELECT current_database(), (SELECT applied::text FROM django_migrations "
            "WHERE app = 'jobs' AND name = '0001_initial')"
        )
        database, created = cursor.fetchone()
    digest = hashlib.sha256(f"{system}|{database}|{created}".encode()).hexdigest()
    return digest[:16]


def media_marker_path() -> Path:
    return Path(settings.MEDIA_ROOT) / MARKER_NAME


def media_marker_write() -> Path:
    """Mark MEDIA_ROOT as this database's shared media directory (the main machine)."""
    path = media_marker_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{MARKER_NAME}.{os.getpid()}")
    written = datetime.now(tz=UTC).isoformat(timespec="seconds")
    partial.write_text(
        f"{cluster_id()}\n"
        f"# Coreboard: the shared MEDIA_ROOT of database {connection.settings_dict['NAME']}, "
        f"written by {socket.gethostname()} at {written}.\n"
        "# Workers refuse to start without it (jobs/engine/preflight.py). Do not copy it.\n"
    )
    partial.chmod(0o644)
    partial.replace(path)
    return path


def media_problem() -> str | None:
    path = media_marker_path()
    try:
        found = path.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return (
            f"MEDIA_ROOT {settings.MEDIA_ROOT} is not the main machine's shared media directory "
            f"(no {MARKER_NAME} marker in it). Fix: mount the main machine's MEDIA_ROOT (e.g. "
            "over NFS) and set MEDIA_ROOT to where it is mounted; the main machine writes the "
            "marker when it starts (make run, or manage.py media_mark)."
        )
    except OSError as error:
        return f"MEDIA_ROOT {settings.MEDIA_ROOT}: cannot read {path}: {error}."
    expected = cluster_id()
    if found != expected:
        return (
            f"MEDIA_ROOT {settings.MEDIA_ROOT} belongs to another Coreboard database (its "
            f"marker says {found!r}, this database is {expected!r}). Fix: set MEDIA_ROOT to the "
            "shared directory of the main machine that uses this DATABASE_URL."
        )
    return None


def migrations_problem() -> str | None:
    executor = MigrationExecutor(connection)
    loader = executor.loader
    problems = []
    unapplied = [
        f"{migration.app_label}.{migration.name}"
        for migration, _ in executor.migration_plan(loader.graph.leaf_nodes())
    ]
    if unapplied:
        problems.append(
            "the database schema is behind this code: unapplied migrations "
            f"{', '.join(unapplied)}. Fix: migrate on the main machine first (make run does at "
            "start; or manage.py migrate), or run the code the main machine runs."
        )
    unknown = sorted(
        f"{app}.{name}"
        for app, name in loader.applied_migrations
        if app in loader.migrated_apps and (app, name) not in loader.disk_migrations
    )
    if unknown:
        problems.append(
            "the database schema is ahead of this code: migrations "
            f"{', '.join(unknown)} are applied but unknown here. Fix: update this checkout to "
            "the main machine's commit."
        )
    return "\n  - ".join(problems) or None


def clock_problem() -> str | None:
    with connection.cursor() as cursor:
        sent = time.time()
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        answered = time.time()
        server = float(cursor.fetchone()[0])
    skew = server - (sent + answered) / 2
    if abs(skew) - (answered - sent) / 2 <= CLOCK_MAX_SKEW_S:
        return None
    return (
        f"this machine's clock is {skew:+.1f} s off the database server's (at most "
        f"{CLOCK_MAX_SKEW_S:.0f} s): leases and heartbeats compare times across machines. "
        "Fix: synchronise the clocks with NTP (chrony, systemd-timesyncd) on every machine."
    )


def node_name_take(wanted: str) -> str:
    """The node name this worker runs under, taken for its main process before Celery uses
    it (jobs.engine.tasks, at `celeryd_init`): `wanted`, or `wanted-2`... when another
    machine's worker holds `wanted` (workers.node_take), said on stderr. When it cannot be
    taken (a live worker of this machine has it, or Redis does not answer), `wanted`: the
    preflight then refuses, saying why."""
    try:
        name, holder = workers.node_take(wanted)
    except redis.RedisError:
        return wanted
    if holder is None and name != wanted:
        print(
            f"coreboard worker: node name {wanted!r} is held by a worker on another machine "
            f"(live, or silent for less than {workers.FORGET_AFTER_S} s: partitioned, "
            f"perhaps); this worker runs as {name!r}. Give each machine its own name "
            "(make worker NODE=<name>) to keep names stable.",
            file=sys.stderr,
            flush=True,
        )
    return name


def node_problem(node: str) -> str | None:
    """Takes `node` for this process (the registry entry its beats then keep; usually
    already taken by node_name_take), or says who holds it."""
    me = workers.process_id(node=node)
    holder = workers.node_claim(node, process=me)
    if holder is not None and holder.is_gone():
        # The previous worker of this name on this machine died or the machine rebooted
        # (its entry outlives it): this is its restart.
        holder = workers.node_claim(node, process=me, replacing=holder.process)
    if holder is None:
        return None
    where = "this machine" if holder.is_this_machine() else "another machine"
    return (
        f"node name {node!r} is taken by a live worker on {where} (process {holder.process}). "
        "Fix: give this worker its own name (make worker NODE=<name>, or celery -n "
        "<name>@%h), or stop the other one first."
    )


def preflight_problems(node: str) -> list[str]:
    """Every problem found, in the order an operator fixes them."""
    problems = [migrations_problem(), media_problem(), clock_problem()]
    try:
        name_problem = node_problem(node)
        if any(problems) and name_problem is None:
            # A worker that will refuse anyway must not hold the name meanwhile.
            workers.node_release(node, process=workers.process_id(node=node))
        problems.append(name_problem)
    except redis.RedisError as error:
        problems.append(f"cannot reach Redis (REDIS_URL) to check the node name: {error}.")
    return [problem for problem in problems if problem]


def worker_preflight(node: str) -> None:
    """Refuse to start (PreflightRefused, exit status 78) when a check fails."""
    if os.environ.get(SKIP_ENV, "").lower() in {"1", "true", "yes", "on"}:
        print(f"coreboard worker {node}: {SKIP_ENV} is set: starting unchecked", file=sys.stderr)
        return
    try:
        problems = preflight_problems(node)
    except DatabaseError as error:
        problems = [f"cannot use the database (DATABASE_URL): {error}".strip()]
    finally:
        # The pool forks after this: its children must not share this connection.
        connection.close()
    if not problems:
        return
    lines = [f"coreboard worker {node}: refusing to start:"]
    lines += [f"  - {problem}" for problem in problems]
    lines.append(f"  (in an emergency, {SKIP_ENV}=1 starts it without these checks)")
    print("\n".join(lines), file=sys.stderr, flush=True)
    raise PreflightRefused(EXIT_CODE)
