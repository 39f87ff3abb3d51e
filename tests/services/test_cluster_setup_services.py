"""Cluster in minutes, piece by piece: COREBOARD_LISTEN, the join command, `make worker`
options, and a dead worker's node name taken over by its restart."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from coreconf import paths
from jobs.engine import preflight as worker_preflight
from jobs.engine import workers
from launcher import join, stack, worker
from tests.factories import preflight_node_name as _node


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


# --- the worker preflight -------------------------------------------------------------------


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
