"""Cluster in minutes, with real processes: the worker preflight (schema, MEDIA_ROOT, node
name) refuses what it must, and the join command starts a worker in another network
namespace."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from coreboard.client import Client
from coreconf import paths
from jobs.engine import preflight as worker_preflight
from jobs.engine import workers
from launcher import stack
from launcher.worker import worker_command
from tests.factories import preflight_node_name as _node
from tests.processes import ServerProcess
from tests.services_plugin import TEST_VAR

JOIN_VAR = TEST_VAR / "make-run-join"


# --- the worker preflight, with real worker processes -------------------------------------


def _start_refused(env: dict[str, str], node: str) -> subprocess.CompletedProcess[str]:
    """A real worker that is expected to refuse: its exit status and output."""
    return subprocess.run(
        worker_command(1, "--without-gossip", "--without-mingle", "-n", node),
        cwd=paths.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_with_another_media_root_refuses(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    unshared = tmp_path / "local-media"
    result = _start_refused({**child_env, "MEDIA_ROOT": str(unshared)}, _node())
    assert result.returncode == worker_preflight.EXIT_CODE, result.stdout + result.stderr
    assert f"MEDIA_ROOT {unshared} is not the main machine's shared media directory" in (
        result.stderr
    )
    assert "migrations" not in result.stderr


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_marker_of_another_database_is_refused_and_the_emergency_switch_skips(
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings.MEDIA_ROOT = tmp_path
    assert "is not the main machine's shared media directory" in (
        worker_preflight.media_problem() or ""
    )
    (tmp_path / worker_preflight.MARKER_NAME).write_text("0123456789abcdef\n")
    assert "belongs to another Coreboard database" in (worker_preflight.media_problem() or "")
    worker_preflight.media_marker_write()
    assert worker_preflight.media_problem() is None
    (tmp_path / worker_preflight.MARKER_NAME).unlink()
    with pytest.raises(worker_preflight.PreflightRefused):
        worker_preflight.worker_preflight(_node())
    assert "refusing to start" in capsys.readouterr().err
    monkeypatch.setenv(worker_preflight.SKIP_ENV, "1")
    worker_preflight.worker_preflight(_node())
    assert "starting unchecked" in capsys.readouterr().err


@pytest.fixture
def old_schema_env(child_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """child_env pointed at a database migrated only up to jobs 0003."""
    name = f"{connection.settings_dict['NAME']}_old_{secrets.token_hex(3)}"
    admin_url = child_env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {**child_env, "DATABASE_URL": child_env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"}
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "jobs", "0003", "--noinput", "-v", "0"],
            cwd=paths.BASE_DIR,
            env=env,
            check=True,
        )
        yield env
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.integration
def test_a_worker_on_an_older_schema_refuses_naming_the_migrations(
    old_schema_env: dict[str, str],
) -> None:
    result = _start_refused(old_schema_env, _node())
    assert result.returncode == worker_preflight.EXIT_CODE, result.stdout + result.stderr
    assert "the database schema is behind this code" in result.stderr
    assert "jobs.0004_chunk_leases" in result.stderr
    assert "migrate on the main machine first" in result.stderr
    # A schema newer than the code (a migration this checkout lacks) is refused as well.
    with psycopg.connect(old_schema_env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO django_migrations (app, name, applied) "
            "VALUES ('jobs', '0099_from_a_newer_checkout', now())"
        )
    result = _start_refused(old_schema_env, _node())
    assert result.returncode == worker_preflight.EXIT_CODE
    assert "jobs.0099_from_a_newer_checkout are applied but unknown here" in result.stderr


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_with_a_live_nodes_name_refuses(child_env: dict[str, str]) -> None:
    node = _node()
    args = worker_command(1, "--without-gossip", "--without-mingle", "-n", node)
    first = ServerProcess(args, child_env, "first worker")
    try:
        first.wait_for_line("ready.")
        result = _start_refused(child_env, node)
        assert result.returncode == worker_preflight.EXIT_CODE, result.stdout + result.stderr
        assert f"node name {node!r} is taken by a live worker" in result.stderr
        assert "NODE=" in result.stderr
        # The refused one left the live node's registration alone.
        claimant = workers.client().hget(workers.node_key(node), workers.NODE_PROCESS_FIELD)
        assert claimant == workers.process_id(node=node, pid=first.process.pid)
    finally:
        first.stop()
    # After a clean stop the name is free again at once.
    again = ServerProcess(args, child_env, "same name again")
    try:
        again.wait_for_line("ready.")
    finally:
        again.stop()


# --- the join command, run in another network namespace -------------------------------------


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair: (name, host address, its
    address), in a random private 10.77.x.0/24."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2; see the other preflight tests")
    tag = secrets.token_hex(3)
    name, host_side, far_side = f"cbjoin{tag}", f"cbh{tag}", f"cbn{tag}"
    subnet = secrets.choice(range(1, 255))
    host_address, far_address = f"10.77.{subnet}.1", f"10.77.{subnet}.2"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"`ip netns add` does not work here: {error.stderr.strip()}")
    try:
        _ip("link", "add", host_side, "type", "veth", "peer", "name", far_side)
        _ip("link", "set", far_side, "netns", name)
        _ip("addr", "add", f"{host_address}/24", "dev", host_side)
        _ip("link", "set", host_side, "up")
        _ip("addr", "add", f"{far_address}/24", "dev", far_side, namespace=name)
        _ip("link", "set", far_side, "up", namespace=name)
        _ip("link", "set", "lo", "up", namespace=name)
        yield name, host_address, far_address
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", host_side)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", name)


@pytest.mark.integration
def test_the_join_command_starts_a_worker_in_another_network_namespace(
    namespace: tuple[str, str, str], tmp_path: Path
) -> None:
    name, host_address, _ = namespace
    port = stack.free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        COREBOARD_VAR_DIR=str(JOIN_VAR),
        PORT=str(port),
        COREBOARD_PG_PORT=str(stack.free_port()),
        COREBOARD_REDIS_PORT=str(stack.free_port()),
        COREBOARD_WORKER_CONCURRENCY="0",
        COREBOARD_LISTEN=host_address,
        COREBOARD_PG_MAX_CONNECTIONS="150",
        COREBOARD_BIND=host_address,
        ALLOWED_HOSTS=host_address,
        PYTHONUNBUFFERED="1",
    )
    env.pop("COREBOARD_ADMIN_PASSWORD", None)
    env.pop("MEDIA_ROOT", None)
    main = ServerProcess([sys.executable, "-m", "launcher.run"], env, "make run")
    far_worker: ServerProcess | None = None
    try:
        main.wait_for_line("Coreboard is running", timeout=180)
        # A web-only main machine: no local worker, but the cluster's scheduler (beat
        # only sends people's schedules to the queues; the workers elsewhere run them).
        assert "web only" in main.output()
        commands = [" ".join(child.cmdline()) for child in main.children()]
        celery = [command for command in commands if "celery" in command]
        assert len(celery) == 1
        assert " beat " in celery[0]
        # The join command holds passwords: in a 0600 file, not in a log.
        command_file = JOIN_VAR / "join-command"
        assert stat.S_IMODE(command_file.stat().st_mode) == 0o600
        assert str(command_file) in main.output()
        worker_password = (JOIN_VAR / "secrets" / "pg-worker-password").read_text().strip()
        assert worker_password not in main.output()
        command = command_file.read_text().strip()
        assert f"@{host_address}:" in command

        # Only the worker role may log in from the network; the superuser stays on loopback.
        superuser = (JOIN_VAR / "secrets" / "pg-password").read_text().strip()
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
            psycopg.connect(
                f"postgresql://coreboard:{superuser}@{host_address}:"
                f"{env['COREBOARD_PG_PORT']}/coreboard",
                connect_timeout=5,
            ).close()

        with psycopg.connect(
            f"postgresql://coreboard:{superuser}@127.0.0.1:{env['COREBOARD_PG_PORT']}/coreboard"
        ) as local:
            assert local.execute("SHOW max_connections").fetchone() == ("150",)

        # The other "machine": its own network, its own var/ (node id), no URLs of ours.
        far_env = {k: v for k, v in env.items() if not k.startswith("COREBOARD_")}
        far_env.update(COREBOARD_VAR_DIR=str(tmp_path / "far-var"), PYTHONUNBUFFERED="1")
        far_worker = ServerProcess(
            ["ip", "netns", "exec", name, "bash", "-c", command], far_env, "netns worker"
        )
        far_worker.wait_for_line("ready.", timeout=120)
        node_line = [line for line in far_worker.lines if "coreboard-" in line and "@" in line]
        assert node_line, far_worker.output()

        token = subprocess.run(
            [sys.executable, "manage.py", "token_create", "admin"],
            cwd=paths.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with Client(f"http://{host_address}:{port}", token) as client:
            job = client.submit("primes", {"start": 0, "stop": 2_000_000, "chunks": 4})
            done = client.wait(job["id"])
            assert done["status"] == "succeeded", done
            assert done["result"] == {"count": 148933}
            chunks = client._request("GET", f"/api/jobs/{job['id']}/chunks/").json()["results"]
        far_pids = {child.pid for child in far_worker.children()}
        assert chunks
        assert {chunk["pid"] for chunk in chunks} <= far_pids
    finally:
        if far_worker is not None:
            far_worker.stop()
            # make does not wait for a worker it was told to stop: end what is left of it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(far_worker.process.pid, signal.SIGKILL)
        main.stop()
