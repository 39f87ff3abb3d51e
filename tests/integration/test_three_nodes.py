"""Three worker nodes on one machine (distinct Celery node names, as on three machines): a
job spreads over all of them, one node dies mid-job without costing the job, another stops
cleanly without a trace. tests/integration/test_cluster_setup.py runs a worker in its own network
namespace; these run as plain processes so that they work wherever the suite runs."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client, override_settings

from jobs import kinds
from jobs.engine import preflight, workers
from jobs.models import Chunk, Job
from jobs.protocol import ClusterState, NodeState
from jobs.services import nodes
from launcher import join, run, stack
from launcher.worker import worker_command
from tests.factories import SMALL_MANDELBROT, make_job
from tests.processes import ServerProcess, start_celery_worker, start_daphne
from tests.services_plugin import TEST_VAR
from tests.waiting import poll_until, wait_for_chunk_running_on, wait_for_job
from tokens.services import token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOST_WITHIN_S = 5
RECOVERED_WITHIN_S = 30
PRIMES_BELOW_1E9 = 50_847_534
FINAL = {"succeeded", "failed", "cancelled"}


def _pids(worker: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(worker.process.pid).children()}


def _node(state: ClusterState, name: str) -> NodeState | None:
    return next((node for node in state["nodes"] if node["node"] == name), None)


def _overview_initial(page: str) -> dict[str, Any]:
    """The overview's first state, as the page embeds it (json_script)."""
    found = re.search(r'<script id="overview-initial" type="application/json">(.*?)</script>', page)
    assert found, page[:500]
    initial: dict[str, Any] = json.loads(found.group(1))
    return initial


@pytest.fixture
def three_nodes(child_env: dict[str, str]) -> Iterator[dict[str, ServerProcess]]:
    host = socket.gethostname()
    names = [f"{letter}-{uuid.uuid4().hex[:6]}@{host}" for letter in "abc"]
    nodes = {name: start_celery_worker(child_env, concurrency=1, node=name) for name in names}
    try:
        yield nodes
    finally:
        # Every worker stopped before anything else that could fail (a Redis call): one
        # left running would take other tests' jobs.
        for worker in nodes.values():
            worker.stop()
        for name in nodes:
            with contextlib.suppress(redis.RedisError):
                workers.node_remove(name)


def test_a_job_runs_on_three_nodes_and_survives_losing_one(
    alice: User, three_nodes: dict[str, ServerProcess]
) -> None:
    names = list(three_nodes)

    def all_active() -> ClusterState | None:
        state = workers.cluster_state()
        active = all((node := _node(state, name)) and node["state"] == "active" for name in names)
        return state if active else None

    state = poll_until(all_active, timeout=15, every=0.1)
    for name in names:
        node = _node(state, name)
        assert node is not None
        assert node["code_version"] == workers.code_version()
        assert "primes" in node["kinds"]
        assert "burn" in node["kinds"]

    job = make_job(
        alice, "primes", parallelism=6, committed=True, start=0, stop=1_000_000_000, chunks=30
    )
    job = wait_for_job(job.pk, until=FINAL, timeout=120)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result == {"count": PRIMES_BELOW_1E9}
    ran_on = set(job.chunks.values_list("pid", flat=True))
    for name, worker in three_nodes.items():
        assert ran_on & _pids(worker), f"no chunk ran on {name}"

    # Every process of one node killed at once mid-job, as if its machine died.
    victim_name, victim = names[2], three_nodes[names[2]]
    job = make_job(alice, "burn", parallelism=6, committed=True, chunks=30, ms=400)
    wait_for_chunk_running_on(job.pk, _pids(victim))
    victim.kill_all()
    killed_at = time.monotonic()
    poll_until(
        lambda: (node := _node(workers.cluster_state(), victim_name)) and node["state"] == "lost",
        timeout=LOST_WITHIN_S + 5,
        every=0.1,
    )
    assert time.monotonic() - killed_at < LOST_WITHIN_S
    job = wait_for_job(job.pk, until=FINAL, timeout=RECOVERED_WITHIN_S + 30)
    assert time.monotonic() - killed_at < RECOVERED_WITHIN_S
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.done_chunks == 30
    assert job.chunks.filter(status=Chunk.Status.DONE).count() == 30
    assert isinstance(job.result, dict)
    assert job.result["chunks"] == 30

    # A clean stop of another node leaves no lost process behind.
    stopped_name = names[1]
    three_nodes[stopped_name].stop()
    state = workers.cluster_state()
    assert _node(state, stopped_name) is None
    assert [p for p in state["processes"] if p["node"] == stopped_name] == []
    survivor = _node(state, names[0])
    assert survivor is not None
    assert survivor["state"] == "active"


# --- issue 19: a worker joined as root, a name reused across a partition, true node cards ---


@pytest.fixture
def picture_kind() -> Iterator[str]:
    """The `picture` kind (a result file), registered here for the test only: no other
    worker of the suite has it, so the worker a test starts with it writes its file."""
    with kinds.temporary():
        from tests import kinds_picture

        kinds.register(kinds_picture.Picture)
        yield kinds_picture.NAME


@pytest.fixture
def own_media() -> Iterator[Path]:
    """A MEDIA_ROOT of the test's own, beside the suite's (not under pytest's 0700 tmp,
    whose ACL mask pytest resets at every session)."""
    path = TEST_VAR / f"media-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _service_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("joining as root needs root (the suite runs as root on CI machines)")
    user = stack.service_user()
    assert user is not None
    stack.grant_interpreter(user)
    return user


def test_a_worker_joined_as_root_runs_as_the_service_user_and_the_web_reads_its_files(
    alice: User, child_env: dict[str, str], picture_kind: str, own_media: Path
) -> None:
    """`make worker` (launcher.worker, what the join command runs) started by root: the
    worker runs as the main machine's service user, result files are the web's to read
    (daphne as that user answers 200), older root-owned result folders are given back,
    and its card shows the kinds it runs and the code version recorded at start, the
    web's own (daphne as the service user, for whom git refuses a checkout of root's)."""
    user = _service_user()
    media = own_media
    with override_settings(MEDIA_ROOT=media):
        preflight.media_marker_write()
    # What an older `make worker` run as root left: a folder the web could not enter.
    old = media / "results" / "2020" / "01" / "01"
    old.mkdir(parents=True, mode=0o750)
    (old / "old.png").write_bytes(b"png")
    (old / "old.png").chmod(0o640)
    name = f"root-joined-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    env = {
        **child_env,
        "MEDIA_ROOT": str(media),
        "COREBOARD_JOB_KINDS": f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_picture",
        # It runs these two of the kinds it has: its card must say so.
        "COREBOARD_WORKER_KINDS": f"burn,{picture_kind}",
    }
    env.pop("COREBOARD_CODE_VERSION", None)
    web_env = {
        **env,
        **run.service_env(database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"]),
    }
    web_env.update(MEDIA_ROOT=str(media), COREBOARD_JOB_KINDS=env["COREBOARD_JOB_KINDS"])
    web_env.pop("COREBOARD_WORKER_KINDS")
    command = [sys.executable, "-m", "launcher.worker", "--node", name, "--concurrency", "1"]
    worker = ServerProcess(command, env, "make worker as root")
    daphne: ServerProcess | None = None
    try:
        worker.wait_for_line("ready.", timeout=120)
        assert psutil.Process(worker.process.pid).uids().real == user.pw_uid
        for folder in (old, old.parent, media / "results"):
            assert folder.stat().st_uid == user.pw_uid, folder
        assert (old / "old.png").stat().st_uid == user.pw_uid
        daphne, url = start_daphne(web_env, user=user)

        picture: dict[str, Any] = {**SMALL_MANDELBROT, "chunks": 4}
        job = make_job(alice, picture_kind, parallelism=1, committed=True, **picture)
        job = wait_for_job(job.pk, until=FINAL, timeout=120)
        assert job.status == Job.Status.SUCCEEDED, job.error
        # The chunks record the node that ran them, not the host name.
        assert set(job.chunks.values_list("worker", flat=True)) == {name}
        # Written under the worker's MEDIA_ROOT (this process's settings name the suite's).
        path = media / job.result_file.name
        made = path
        while made != media:
            info = made.stat()
            assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid), made
            assert stat.S_IMODE(info.st_mode) & 0o007 == 0, made
            made = made.parent
        api = {"Authorization": f"Token {token_create(user=alice, name='root-join').key}"}
        answer = httpx.get(f"{url}/api/jobs/{job.pk}/result-file/", headers=api, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.content == path.read_bytes()

        # A file the web's user cannot read (as a root worker left them) is a clear
        # refusal, not a 500.
        os.chown(path, 0, 0)
        path.chmod(0o600)
        refused = httpx.get(f"{url}/api/jobs/{job.pk}/result-file/", headers=api, timeout=10)
        assert refused.status_code == 503, refused.text
        assert "cannot read it" in refused.json()["detail"]

        # Its card: the kinds it runs, the code version recorded at start, the web's own.
        browser = Client()
        browser.force_login(alice)
        cookie = f"sessionid={browser.cookies['sessionid'].value}"
        page = httpx.get(f"{url}/", headers={"Cookie": cookie}, timeout=10)
        assert page.status_code == 200, page.text[:500]
        initial = _overview_initial(page.text)
        recorded = join.code_version()
        assert recorded
        assert initial["cluster"]["web"]["code_version"] == recorded
        card = _node(initial["cluster"], name)
        assert card is not None, initial["cluster"]["nodes"]
        assert card["kinds"] == sorted(["burn", picture_kind])
        assert card["code_version"] == recorded
    finally:
        worker.stop()
        if daphne is not None:
            daphne.stop()
        workers.node_remove(name)


def test_a_name_taken_during_a_partition_is_renamed_and_both_nodes_keep_working(
    alice: User, child_env: dict[str, str], tmp_path: Path
) -> None:
    """A node cut off for longer than the liveness window keeps its name (its lease lasts
    as long as its card shows it lost); another machine's worker started with that name
    meanwhile runs as `name-2`; both work once the partition heals, each on its own card,
    and a clean stop of one leaves the other active and claiming."""
    name = f"alpha-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    renamed = workers.node_name_candidates(name)[1]
    alpha = start_celery_worker(child_env, concurrency=1, node=name)
    other: ServerProcess | None = None
    try:
        poll_until(lambda: _state_of(name) == "active", timeout=15, every=0.1)
        # Every process of alpha frozen: to Redis, a partition looks just like this.
        os.killpg(alpha.process.pid, signal.SIGSTOP)
        poll_until(lambda: _state_of(name) == "lost", timeout=LOST_WITHIN_S + 5, every=0.1)
        # Another machine (its own var/, so its own node id) starts a worker of that name.
        other_env = {**child_env, "COREBOARD_VAR_DIR": str(tmp_path / "other-machine")}
        args = worker_command(1, "--without-gossip", "--without-mingle", "-n", name)
        other = ServerProcess(args, other_env, "the other machine's worker")
        other.wait_for_line("ready.")
        assert f"this worker runs as {renamed!r}" in other.output()
        os.killpg(alpha.process.pid, signal.SIGCONT)

        state = poll_until(
            lambda: (
                s
                if _state_of(name, s := workers.cluster_state()) == "active"
                and _state_of(renamed, s) == "active"
                else None
            ),
            timeout=15,
            every=0.1,
        )
        alpha_card, other_card = _node(state, name), _node(state, renamed)
        assert alpha_card is not None
        assert other_card is not None
        assert (alpha_card["renamed_from"], other_card["renamed_from"]) == ("", name)
        # Each name is held by its own worker's main process: two cards, never one.
        holder = workers.client().hget(workers.node_key(name), workers.NODE_PROCESS_FIELD)
        assert holder == workers.process_id(node=name, pid=alpha.process.pid)
        holder = workers.client().hget(workers.node_key(renamed), workers.NODE_PROCESS_FIELD)
        assert holder == workers.process_id(node=renamed, pid=other.process.pid)

        job = make_job(alice, "burn", parallelism=6, committed=True, chunks=30, ms=300)
        job = wait_for_job(job.pk, until=FINAL, timeout=120)
        assert job.status == Job.Status.SUCCEEDED, job.error
        ran_on = set(job.chunks.values_list("worker", flat=True))
        assert {name, renamed} <= ran_on, ran_on

        # Celery knows the renamed worker by its new name too: its remote control (drain)
        # reaches it.
        drained = nodes.node_drain(node=renamed, draining=True)
        assert drained.unconfirmed == []
        assert drained.claims_settled
        # A clean stop of one: the other stays active, with no drain flag, and claims.
        other.stop()
        state = workers.cluster_state()
        assert _node(state, renamed) is None
        alpha_card = _node(state, name)
        assert alpha_card is not None
        assert (alpha_card["state"], alpha_card["draining"]) == ("active", False)
        assert not workers.node_is_draining(name)
        job = make_job(alice, "burn", parallelism=6, committed=True, chunks=30, ms=200)
        job = wait_for_job(job.pk, until=FINAL, timeout=120)
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert name in set(job.chunks.values_list("worker", flat=True))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(alpha.process.pid, signal.SIGCONT)
        alpha.stop()
        if other is not None:
            other.stop()
        with contextlib.suppress(redis.RedisError):
            workers.node_remove(name)
            workers.node_remove(renamed)


def _state_of(name: str, state: ClusterState | None = None) -> str | None:
    node = _node(state or workers.cluster_state(), name)
    return node["state"] if node else None


def test_a_worker_whose_name_was_taken_while_it_was_cut_off_stops_and_leaves_the_card(
    child_env: dict[str, str],
) -> None:
    """A partition longer than the name's lease: another machine's worker took the name.
    The one cut off, back, finds its beat refused and stops (cold), without writing,
    draining or removing the holder's node."""
    name = f"cut-off-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    worker = start_celery_worker(child_env, concurrency=1, node=name)
    try:
        poll_until(lambda: _state_of(name) == "active", timeout=15, every=0.1)
        holder = f"{name}|4242|0therb00t"
        # What the other machine's start wrote once the lease had lapsed (node_claim).
        registry = workers.client()
        taken: dict[Any, Any] = {
            workers.NODE_PROCESS_FIELD: holder,
            workers.NODE_MACHINE_FIELD: "0ther000",
        }
        swap = registry.pipeline(transaction=True)
        swap.delete(workers.node_key(name))
        swap.hset(workers.node_key(name), mapping=taken)
        swap.execute()
        poll_until(lambda: worker.process.poll() is not None, timeout=30, every=0.1)
        assert "is now held by" in worker.output()
        assert registry.hgetall(workers.node_key(name)) == taken
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.stop()
        workers.node_remove(name)
