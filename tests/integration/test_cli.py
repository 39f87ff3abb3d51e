"""The `coreboard` command line and Python client against the real stack (daphne, workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from coreboard.client import ApiError, Client
from jobs import services as job_services
from tests.factories import make_job
from tokens import services as token_services

COREBOARD = str(Path(sys.executable).with_name("coreboard"))


def _run(url: str, key: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COREBOARD_URL": url, "COREBOARD_TOKEN": key}
    env.pop("COREBOARD_CONFIG", None)
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
