"""Cluster in minutes: COREBOARD_LISTEN, the join command, `make worker` options and the
worker preflight (schema, MEDIA_ROOT, node name), with real processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import psycopg
import pytest
from django.db import connection

from coreboard.client import Client
from coreconf import paths
from jobs.engine import preflight as worker_preflight
from jobs.engine import workers
from launcher import join, stack, worker
from launcher.worker import worker_command
from tests.processes import ServerProcess
from tests.services_plugin import TEST_VAR

JOIN_VAR = TEST_VAR / "make-run-join"


def _addresses(*entries: tuple[str, str]) -> dict[str, list[Any]]:
    return {
        "eth9": [
            SimpleNamespace(family=socket.AF_INET, address=address, netmask=netmask)
            for address, netmask in entries
        ]
    }


# --- COREBOARD_LISTEN and the join command --------------------------------------------------


@pytest.mark.services
def test_listen_network_is_the_interface_network_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: _addresses(("10.0.0.5", "255.255.0.0")))
    listen = join.listen_from_env({"COREBOARD_LISTEN": "10.0.0.5"})
    assert listen is not None
    assert str(listen.network) == "10.0.0.0/16"
    given = join.listen_from_env(
        {"COREBOARD_LISTEN": "10.0.0.5", "COREBOARD_LISTEN_NETWORK": "10.0.7.0/24"}
    )
    assert given is not None
    assert str(given.network) == "10.0.7.0/24"
    assert join.listen_from_env({}) is None


@pytest.mark.services
@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COREBOARD_LISTEN": "db.example.org"}, "COREBOARD_LISTEN must be an IP address"),
        ({"COREBOARD_LISTEN": "127.0.0.1"}, "not reachable from other machines"),
        ({"COREBOARD_LISTEN": "10.9.9.9"}, "not an address of this machine"),
        (
            {"COREBOARD_LISTEN": "10.0.0.5", "COREBOARD_LISTEN_NETWORK": "10.0.0/x"},
            "COREBOARD_LISTEN_NETWORK must be a network",
        ),
    ],
)
def test_listen_refuses_what_it_cannot_serve(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], message: str
) -> None:
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: _addresses(("10.0.0.5", "255.255.255.0")))
    with pytest.raises(stack.StackError, match=message):
        join.listen_from_env(environ)


@pytest.mark.services
def test_a_host_route_address_needs_the_network_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: _addresses(("10.0.0.5", "255.255.255.255")))
    with pytest.raises(stack.StackError, match="set COREBOARD_LISTEN_NETWORK"):
        join.listen_from_env({"COREBOARD_LISTEN": "10.0.0.5"})


@pytest.mark.services
def test_join_command_survives_any_password_and_carries_shared_settings(tmp_path: Path) -> None:
    password = "p@ss:w/rd?#% 'x\""
    database_url = paths.postgres_url(
        user="coreboard_worker", password=password, host="10.0.0.5", port=54329, database="cb"
    )
    command = join.join_command(
        database_url=database_url,
        redis_url=paths.redis_url(password=password, host="10.0.0.5", port=56379),
        media_root=tmp_path,
        environ={"COREBOARD_JOB_KINDS": "mykinds", "COREBOARD_LEASE_MS": "20000", "HOME": "/x"},
    )
    words = shlex.split(command)
    assert words[-2:] == ["make", "worker"]
    assigned = dict(word.split("=", 1) for word in words[:-2])
    assert set(assigned) == {
        "DATABASE_URL",
        "REDIS_URL",
        "MEDIA_ROOT",
        "COREBOARD_JOB_KINDS",
        "COREBOARD_LEASE_MS",
    }
    parsed = urllib.parse.urlsplit(assigned["DATABASE_URL"])
    assert urllib.parse.unquote(parsed.password or "") == password
    assert (parsed.hostname, parsed.port, parsed.path) == ("10.0.0.5", 54329, "/cb")
    redis_parts = urllib.parse.urlsplit(assigned["REDIS_URL"])
    assert urllib.parse.unquote(redis_parts.password or "") == password
    assert assigned["MEDIA_ROOT"] == str(tmp_path.resolve())


# --- make worker ---------------------------------------------------------------------------


@pytest.mark.services
def test_make_worker_options_become_celery_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(paths, "VAR_DIR", tmp_path)
    args, environ = worker.worker_args(
        ["--node", "gpu1", "--queues", "big,small", "--concurrency", "3", "--labels", "gpu,ssd"],
        {"PATH": "/usr/bin"},
    )
    assert args[args.index("-n") + 1] == f"gpu1@{socket.gethostname()}"
    assert args[args.index("-Q") + 1] == "big,small"
    assert "--concurrency=3" in args
    assert environ["COREBOARD_WORKER_LABELS"] == "gpu,ssd"
    # Environment fallbacks, and a default name that is stable for this checkout.
    first, _ = worker.worker_args([], {"COREBOARD_WORKER_CONCURRENCY": "2"})
    again, _ = worker.worker_args([], {})
    name = first[first.index("-n") + 1]
    assert name.startswith("coreboard-")
    assert name.endswith(f"@{socket.gethostname()}")
    assert again[again.index("-n") + 1] == name
    assert "--concurrency=2" in first
    assert "-Q" not in first
    (tmp_path / worker.NODE_ID_FILE).unlink()
    other, _ = worker.worker_args([], {})
    assert other[other.index("-n") + 1] != name


@pytest.mark.services
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "CONCURRENCY must be between 1 and 1024"),
        (["--concurrency", "many"], "CONCURRENCY must be a whole number"),
        (["--node", "two words"], "NODE must be a name"),
        (["--queues", "a,b c"], "QUEUES must be comma-separated names"),
        (["--labels", "x;rm"], "LABELS must be comma-separated names"),
    ],
)
def test_make_worker_refuses_bad_options(argv: list[str], message: str) -> None:
    with pytest.raises(worker.WorkerOptionError, match=message):
        worker.worker_args(argv, {})


@pytest.mark.services
def test_make_worker_passes_only_the_options_given() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        ["make", "-n", "worker", "NODE=n1", "QUEUES=q1,q2", "CONCURRENCY=2", "LABELS=a"],
        cwd=paths.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = " ".join(dry.replace("\\\n", " ").split())
    assert "-m launcher.worker --node 'n1' --queues 'q1,q2' --concurrency '2' --labels 'a'" in line
    plain = subprocess.run(
        ["make", "-n", "worker"],
        cwd=paths.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NODE": "from-the-environment"},
    ).stdout
    assert "--node" not in plain


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


def _node() -> str:
    return f"preflight-{secrets.token_hex(4)}@{socket.gethostname()}"


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


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_dead_workers_name_is_taken_over_by_its_restart() -> None:
    node = _node()
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert workers.node_claim(node, process=workers.process_id(node=node, pid=gone.pid)) is None
    # Its entry is still "live" (beaten just now), but its process is gone.
    assert worker_preflight.node_problem(node) is None
    claimant = workers.client().hget(workers.node_key(node), workers.NODE_PROCESS_FIELD)
    assert claimant == workers.process_id(node=node)
    workers.node_remove(node)


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
        # A web-only main machine: no local worker.
        assert "web only" in main.output()
        commands = [" ".join(child.cmdline()) for child in main.children()]
        assert not [command for command in commands if "celery" in command]
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
