"""`make run` (launcher.run) started for real, as root: least privilege and secrets."""

from __future__ import annotations

import json
import os
import pwd
import stat
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from jobs.engine import workers
from launcher import join, least_privilege, stack
from tests.processes import ServerProcess
from tests.services_plugin import TEST_VAR
from tests.waiting import poll_until

pytestmark = pytest.mark.integration

RUN_VAR = TEST_VAR / "make-run"


@pytest.fixture(scope="module")
def make_run() -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    if os.geteuid() != 0:
        pytest.skip("checks what `make run` does when started by root")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        COREBOARD_VAR_DIR=str(RUN_VAR),
        PORT=str(stack.free_port()),
        COREBOARD_PG_PORT=str(stack.free_port()),
        COREBOARD_REDIS_PORT=str(stack.free_port()),
        COREBOARD_WORKER_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("COREBOARD_ADMIN_PASSWORD", None)
    run = ServerProcess([sys.executable, "-m", "launcher.run"], env, "make run")
    run.wait_for_line("Coreboard is running", timeout=180)
    yield run, env
    run.stop()


def test_nothing_make_run_starts_runs_as_root(
    make_run: tuple[ServerProcess, dict[str, str]],
) -> None:
    run, _ = make_run
    children = psutil.Process(run.process.pid).children(recursive=True)
    commands = {child.pid: " ".join(child.cmdline()) for child in children}
    as_root = {pid: cmd for pid, cmd in commands.items() if 0 in psutil.Process(pid).uids()}
    assert not as_root
    service_uid = pwd.getpwnam("coreboard").pw_uid
    for needle in ("launcher.server", "celery", "redis-server"):
        matching = [c for c in children if needle in commands[c.pid]]
        assert matching, f"no {needle} among {commands}"
        assert all(c.uids().effective == service_uid for c in matching)
    data_dir = str(RUN_VAR / "pg" / "data")
    postgres = [
        p for p in psutil.process_iter(["cmdline", "uids"]) if data_dir in " ".join(p.cmdline())
    ]
    assert postgres
    assert all(p.uids().effective == pwd.getpwnam("postgres").pw_uid for p in postgres)


def test_redis_refuses_commands_without_the_password(
    make_run: tuple[ServerProcess, dict[str, str]],
) -> None:
    _, env = make_run
    port = int(env["COREBOARD_REDIS_PORT"])
    anonymous = redis.Redis(port=port, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.set("coreboard-test", "forged")
    password = (RUN_VAR / "secrets" / "redis-password").read_text().strip()
    assert redis.Redis(port=port, password=password, socket_timeout=5).ping()


def test_the_admin_password_is_in_a_private_file_not_in_the_output(
    make_run: tuple[ServerProcess, dict[str, str]],
) -> None:
    run, env = make_run
    secret = RUN_VAR / "secrets" / "admin-password"
    password = secret.read_text().strip()
    assert password not in run.output()
    assert str(secret) in run.output()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    page = urllib.request.urlopen(f"http://127.0.0.1:{env['PORT']}/accounts/login/", timeout=10)
    assert page.status == 200


def test_media_is_private_to_the_service_account(
    make_run: tuple[ServerProcess, dict[str, str]],
) -> None:
    media = Path(RUN_VAR / "media")
    assert media.stat().st_uid == pwd.getpwnam("coreboard").pw_uid
    assert stat.S_IMODE(media.stat().st_mode) & 0o007 == 0


def test_the_worker_card_shows_the_commit_recorded_at_start_as_the_web_does(
    make_run: tuple[ServerProcess, dict[str, str]],
) -> None:
    """daphne and Celery run as `coreboard`, for whom git refuses root's checkout ("dubious
    ownership"): the commit `make run` recorded reaches both, and the worker's card says
    it, so the overview finds no "code differs"."""
    run, env = make_run
    recorded = join.code_version()
    assert recorded
    children = psutil.Process(run.process.pid).children(recursive=True)
    for needle in ("launcher.server", "celery"):
        child = next(c for c in children if needle in " ".join(c.cmdline()))
        assert child.environ().get("COREBOARD_CODE_VERSION") == recorded, needle
    password = (RUN_VAR / "secrets" / "redis-password").read_text().strip()
    registry = redis.Redis(
        port=int(env["COREBOARD_REDIS_PORT"]),
        password=password,
        socket_timeout=5,
        decode_responses=True,
    )

    def card() -> dict[str, str] | None:
        nodes: list[str] = registry.zrange(workers.NODES, 0, -1)  # type: ignore[assignment]
        for node in nodes:
            data: dict[str, str] = registry.hgetall(workers.node_key(node))  # type: ignore[assignment]
            if "started" in data:
                return data
        return None

    shown = poll_until(card, timeout=30, every=0.2)
    assert shown["code_version"] == recorded
    assert json.loads(shown["kinds"])


def test_the_local_worker_logs_in_with_the_workers_accounts_daphne_with_the_owners(
    make_run: tuple[ServerProcess, dict[str, str]],
) -> None:
    """`make run`'s own worker is as limited as another machine's (launcher.least_privilege);
    and the worker card it beats proves it runs with them."""
    run, env = make_run
    children = psutil.Process(run.process.pid).children(recursive=True)

    def users(needle: str) -> tuple[str | None, str | None]:
        child = next(c for c in children if needle in " ".join(c.cmdline()))
        environ = child.environ()
        return (
            urllib.parse.urlsplit(environ["DATABASE_URL"]).username,
            urllib.parse.urlsplit(environ["REDIS_URL"]).username,
        )

    assert users("--pool=prefork") == (
        least_privilege.WORKER_ROLE,
        least_privilege.WORKER_REDIS_USER,
    )
    assert users("launcher.server") == ("coreboard", "")
    # Beat writes django-celery-beat's tables: the owner's accounts, as daphne's (jobs.beat).
    assert users(" beat ") == ("coreboard", "")
    password = (RUN_VAR / "secrets" / "redis-password").read_text().strip()
    registry = redis.Redis(port=int(env["COREBOARD_REDIS_PORT"]), password=password)
    poll_until(lambda: registry.zcard(workers.NODES) or None, timeout=60)
    owner = (RUN_VAR / "secrets" / "pg-password").read_text().strip()
    url = f"postgresql://coreboard:{owner}@127.0.0.1:{env['COREBOARD_PG_PORT']}/coreboard"
    with psycopg.connect(url, autocommit=True) as conn:
        # The worker's sessions come and go (its reconciler's each second, its slots').
        poll_until(
            lambda: conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE usename = %s",
                [least_privilege.WORKER_ROLE],
            ).fetchone(),
            timeout=30,
            every=0.05,
        )
        readable = conn.execute(
            "SELECT has_table_privilege(%s, 'auth_user', 'SELECT')",
            [least_privilege.WORKER_ROLE],
        ).fetchone()
    assert readable == (False,)
