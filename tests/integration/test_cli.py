"""The `coreboard` command line and Python client against the real stack (daphne, workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from coreboard.cli import main
from coreboard.client import ApiError, Client
from jobs import kinds
from jobs import services as job_services
from jobs.models import Job
from tests.factories import make_job
from tests.processes import start_celery_worker
from tests.waiting import wait_for_job
from tokens import services as token_services

COREBOARD = str(Path(sys.executable).with_name("coreboard"))
# This checkout's `coreboard` package, whichever checkout the virtualenv's editable install
# points at.
CHECKOUT = str(Path(__file__).resolve().parents[2])


def _run(url: str, key: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COREBOARD_URL": url, "COREBOARD_TOKEN": key}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [CHECKOUT, env.get("PYTHONPATH")]))
    env.pop("COREBOARD_CONFIG", None)
    env.pop("COREBOARD_TOKEN_FILE", None)
    return subprocess.run(
        [COREBOARD, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def alice_key(alice: User) -> str:
    return token_services.token_create(user=alice, name="cli").key


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_submit_and_wait_prints_the_prime_count(
    daphne_server: str, celery_worker: object, alice_key: str
) -> None:
    done = _run(
        daphne_server, alice_key,
        "submit", "primes", "--param", "stop=100000000", "--param", "chunks=8", "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5761455" in done.stdout
    assert "succeeded, 8/8 chunks" in done.stdout
    assert "speedup" in done.stdout
    assert "start=0 (the form's suggestion)" in done.stderr


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_watch_of_a_cancelled_job_exits_non_zero_and_json_parses(
    daphne_server: str, alice: User, alice_key: str
) -> None:
    job = make_job(alice, chunks=4, ms=1000, parallelism=1)
    assert job_services.job_cancel(job=job)
    watched = _run(daphne_server, alice_key, "watch", str(job.pk))
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "cancelled" in watched.stdout

    as_json = _run(daphne_server, alice_key, "--json", "watch", str(job.pk))
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["status"] == "cancelled"

    listed = _run(daphne_server, alice_key, "--json", "list", "--status", "cancelled")
    assert listed.returncode == 0
    assert [found["id"] for found in json.loads(listed.stdout)] == [job.pk]
    kinds = _run(daphne_server, alice_key, "--json", "kinds")
    assert "primes" in {kind["name"] for kind in json.loads(kinds.stdout)}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_client_watches_over_the_websocket_and_refuses_other_peoples_jobs(
    daphne_server: str, alice: User, bob: User, alice_key: str
) -> None:
    bobs = make_job(bob, chunks=1, ms=1)
    job_services.job_cancel(job=bobs)
    mine = make_job(alice, chunks=1, ms=1)
    job_services.job_cancel(job=mine)
    with Client(daphne_server, alice_key) as client:
        # The socket itself, not the polling fallback, gives the state.
        states = client._watch_socket(mine.pk)
        first = next(states)
        states.close()
        assert first["id"] == mine.pk
        assert first["status"] == "cancelled"
        with pytest.raises(ApiError) as refused:
            list(client.watch(bobs.pk))
        assert refused.value.status == 404
        with pytest.raises(ApiError) as bad:
            client.submit("primes", {"start": 5, "stop": 1, "chunks": 1})
        assert bad.value.status == 400
        assert "stop" in bad.value.body["params"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_upload_and_result_commands(daphne_server: str, tmp_path: Path, alice_key: str) -> None:
    text = tmp_path / "words.txt"
    text.write_text("to be or not to be\n")
    uploaded = _run(daphne_server, alice_key, "--json", "upload", str(text))
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["size"] == text.stat().st_size

    bad = _run(daphne_server, "not-a-token", "list")
    assert bad.returncode == 1
    assert "401" in bad.stderr


# --- every command, as a person would run it ----------------------------------------------------


@dataclass
class Session:
    """What a command's run needs: the server, alice's token, a folder of her own."""

    url: str
    key: str
    folder: Path
    alice: User
    request: pytest.FixtureRequest

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = _run(self.url, self.key, *args)
        assert done.returncode == 0, f"coreboard {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def submitted(self, kind: str, *params: str) -> dict[str, Any]:
        """A job made with `coreboard submit` (not waited for)."""
        args = [arg for param in params for arg in ("-p", param)]
        return dict(json.loads(self.run("submit", kind, *args, "--json").stdout))

    def succeeded(self) -> int:
        job = self.submitted("primes", "start=0", "stop=1000000", "chunks=4")
        return wait_for_job(job["id"], until={"succeeded"}).pk


def _kinds(session: Session) -> None:
    listed = json.loads(session.run("kinds", "--json").stdout)
    text = session.run("kinds").stdout
    assert {kind["name"] for kind in listed} >= {"primes", "burn", "mandelbrot", "wordcount"}
    for kind in listed:
        assert f"{kind['name']} - {kind['label']}" in text
        for name in kind["params_schema"]["properties"]:
            assert f"--param {name}=" in text


def _submit(session: Session) -> None:
    done = session.run("submit", "primes", "-p", "stop=1000000", "-p", "chunks=4", "--wait")
    assert "succeeded, 4/4 chunks" in done.stdout
    assert '"count": 78498' in done.stdout


def _watch(session: Session) -> None:
    job = session.submitted("primes", "start=0", "stop=1000000", "chunks=4")
    watched = session.run("watch", str(job["id"]))
    assert f"job {job['id']} (primes): succeeded, 4/4 chunks" in watched.stdout


def _list(session: Session) -> None:
    job_id = session.succeeded()
    listed = session.run("list", "--status", "succeeded", "--json")
    assert job_id in [job["id"] for job in json.loads(listed.stdout)]
    table = session.run("list", "--limit", "1").stdout
    assert str(job_id) in table
    assert "succeeded" in table


def _cancel(session: Session) -> None:
    job = session.submitted("burn", "chunks=4", "ms=5000", "fail_rate=0")
    cancelled = session.run("cancel", str(job["id"]))
    assert f"job {job['id']} (burn): cancelled" in cancelled.stdout


def _retry(session: Session) -> None:
    # Every chunk fails (each of its attempts): the job fails, and is retried.
    job = session.submitted("burn", "chunks=1", "ms=10", "fail_rate=1")
    wait_for_job(job["id"], until={"failed"})
    retried = json.loads(session.run("--json", "retry", str(job["id"])).stdout)
    assert retried["id"] == job["id"]
    assert retried["status"] in {"pending", "running"}
    wait_for_job(job["id"], until={"failed"})


def _rerun(session: Session) -> None:
    job_id = session.succeeded()
    again = session.run("rerun", str(job_id)).stdout
    new_id = int(again.split()[1])
    assert new_id != job_id
    assert f"job {new_id} (primes): " in again
    assert wait_for_job(new_id, until={"succeeded"}).params["stop"] == 1000000


def _result(session: Session) -> None:
    job_id = session.succeeded()
    assert json.loads(session.run("result", str(job_id)).stdout) == {"count": 78498}
    out = session.folder / "result.json"
    wrote = session.run("result", str(job_id), "--output", str(out))
    assert f"to {out}" in wrote.stdout
    assert json.loads(out.read_text()) == {"count": 78498}


def _logs(session: Session) -> None:
    session.request.getfixturevalue("chatter_worker")
    with transaction.atomic():
        job = make_job(session.alice, "chatter", chunks=2, lines=2, line_bytes=30)
    wait_for_job(job.pk, until={"succeeded"})
    printed = session.run("logs", str(job.pk)).stdout
    assert "── chunk 0 (done) ──\nline 0 of chunk 0 " in printed
    assert "line 1 of chunk 1 " in printed


def _upload(session: Session) -> None:
    text = session.folder / "words.txt"
    text.write_text("to be or not to be\n")
    uploaded = session.run("upload", str(text))
    assert f"words.txt ({text.stat().st_size} bytes); use --param upload=" in uploaded.stdout
    upload_id = uploaded.stdout.rsplit("upload=", 1)[1].strip()
    counted = session.run("submit", "wordcount", "-p", f"upload={upload_id}", "--wait")
    assert "succeeded" in counted.stdout


SCENARIOS: dict[str, Callable[[Session], None]] = {
    "kinds": _kinds,
    "submit": _submit,
    "watch": _watch,
    "list": _list,
    "cancel": _cancel,
    "retry": _retry,
    "rerun": _rerun,
    "result": _result,
    "logs": _logs,
    "upload": _upload,
}


@pytest.fixture
def chatter_worker(child_env: dict[str, str]) -> Iterator[None]:
    """A worker with the `chatter` kind (it prints), registered here too."""
    with kinds.temporary():
        from tests import kinds_chatter

        kinds.register(kinds_chatter.Chatter)
        env = {**child_env}
        env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_chatter"
        worker = start_celery_worker(env, concurrency=1)
        try:
            yield
        finally:
            worker.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_exits_0_against_a_real_server(
    command: str,
    daphne_server: str,
    celery_worker: object,
    alice: User,
    alice_key: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Each of the click group's commands (a new one fails here until it has a scenario)
    run as a subprocess against the real daphne and prefork workers: exit 0 and output that
    says what was done."""
    if command not in SCENARIOS:
        pytest.fail(f"`coreboard {command}` has no scenario in SCENARIOS")
    session = Session(daphne_server, alice_key, tmp_path, alice, request)
    try:
        SCENARIOS[command](session)
    finally:
        for job in Job.objects.filter(status__in=Job.ACTIVE_STATUSES):
            job_services.job_cancel(job=job)
