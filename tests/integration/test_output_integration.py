"""Chunk output and resources with real prefork workers: print() inside a running chunk
reaches the job's group and the API while it runs, then the chunk's row, the command line
and the worker's log lines (with the job and chunk); a chunk's peak memory; a worker that
prints a megabyte per chunk keeps a flat memory."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.test import APIClient

from coreconf import paths
from jobs import kinds
from jobs.models import Job, ProcessSample
from tests.factories import make_job
from tests.processes import ServerProcess, start_celery_worker
from tests.waiting import JobEvents, poll_until, wait_for_job
from tokens import services as token_services

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

COREBOARD = str(Path(sys.executable).with_name("coreboard"))
FINAL = {"succeeded", "failed", "cancelled"}
MB = 1_000_000
# How many 1 MB-printing chunks the flat-memory test runs (the 10,000:
# COREBOARD_TEST_PRINT_CHUNKS=10000, about a minute on two cores).
PRINT_CHUNKS = int(os.environ.get("COREBOARD_TEST_PRINT_CHUNKS", "2000"))


@pytest.fixture(scope="module")
def chatter_worker(child_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A worker with the `chatter` kind (two processes), registered here too."""
    with kinds.temporary():
        from tests import kinds_chatter

        kinds.register(kinds_chatter.Chatter)
        env = {**child_env}
        env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_chatter"
        worker = start_celery_worker(env, concurrency=2)
        yield worker
        worker.stop()


def _chatter(owner: User, **params: Any) -> tuple[Job, JobEvents]:
    """A chatter job, and its group's events from before it was dispatched."""
    with transaction.atomic():
        job = make_job(owner, "chatter", parallelism=2, **params)
        events = JobEvents(job.pk)
    return job, events


def _printed(index: int, needle: str) -> Any:
    def match(event: dict[str, Any]) -> bool:
        message = event.get("message", {})
        return (
            event["type"] == "chunk.printed"
            and message["index"] == index
            and needle in message["text"]
        )

    return match


def test_print_in_a_running_chunk_streams_live_and_is_kept(
    alice: User,
    chatter_worker: ServerProcess,
    daphne_server: str,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    job, events = _chatter(
        alice, chunks=1, lines=3, line_bytes=20, log=True, hold_until=str(release)
    )
    api = APIClient()
    api.force_authenticate(alice)
    url = f"/api/jobs/{job.pk}/chunks/0/output/"
    key = token_services.token_create(user=alice, name="logs").key
    # This checkout's client first (the shared environment's entry point may install
    # another checkout's package).
    pythonpath = os.pathsep.join(filter(None, [str(paths.BASE_DIR), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "COREBOARD_URL": daphne_server,
        "COREBOARD_TOKEN": key,
        "PYTHONPATH": pythonpath,
    }
    try:
        # The output may arrive in one piece or several (whatever the flusher found each
        # time it woke): in order, each starting where the last ended.
        pieces: list[dict[str, Any]] = []

        def up_to_line_2(event: dict[str, Any]) -> bool:
            if _printed(0, "")(event):
                pieces.append(event["message"])
            return "line 2 of chunk 0" in "".join(piece["text"] for piece in pieces)

        events.next(up_to_line_2, timeout=30)
        seen_at = time.time()
        assert pieces[0]["offset"] == 0
        for before, after in itertools.pairwise(pieces):
            assert after["offset"] == before["offset"] + len(before["text"].encode())
        text = "".join(piece["text"] for piece in pieces)
        assert text.endswith("line 0 of chunk 0 .\nline 1 of chunk 0 .\nline 2 of chunk 0 .\n")
        line_1 = len(text[: text.index("line 1")].encode())
        started = job.chunks.get(index=0).started_at
        assert started is not None
        # Within 2 s of the chunk's start, and while it still runs.
        print(f"first output on the job's group {seen_at - started.timestamp():.3f} s after start")
        assert seen_at - started.timestamp() < 2.0
        live = api.get(url).json()
        assert live["running"] is True
        assert "line 1 of chunk 0" in live["text"]
        assert "says hello through logging" in live["text"]
        assert api.get(url, {"offset": line_1}).json()["text"].startswith("line 1 of chunk 0")
        sampled = events.next(lambda e: e["type"] == "job.sampled", timeout=10)["message"]
        assert sampled["job"] == job.pk
        assert sampled["samples"][0]["rss"] > 10 * MB
        follower = subprocess.Popen(
            [COREBOARD, "logs", str(job.pk), "--follow"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        release.touch()
        job = wait_for_job(job.pk, until=FINAL, timeout=60)
        assert job.status == Job.Status.SUCCEEDED, job.error
        last = events.next(lambda e: e["type"] == "chunk.printed", timeout=10)
        assert last["message"]["index"] == 0
    finally:
        release.touch()
        events.close()
    stored = job.chunks.get(index=0)
    for line in range(3):
        assert f"line {line} of chunk 0" in stored.output
    assert "WARNING tests.kinds_chatter: chunk 0 says hello through logging" in stored.output
    ended = api.get(url).json()
    assert ended["running"] is False
    assert ended["text"] == stored.output
    followed, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert followed == f"── chunk 0 (done) ──\n{stored.output}"
    once = subprocess.run(
        [COREBOARD, "logs", str(job.pk)], env=env, capture_output=True, text=True, check=True
    )
    assert once.stdout == followed
    # The worker's own log line names the job and the chunk.
    chatter_worker.wait_for_line(f"job={job.pk} chunk=0 chunk 0 says hello", timeout=10)
    assert poll_until(lambda: ProcessSample.objects.filter(job=job).exists(), timeout=15)
    assert stored.peak_rss
    assert stored.start_rss
    assert stored.cpu_user_s is not None


def test_a_chunk_that_allocates_500_mb_shows_its_peak(
    alice: User, chatter_worker: ServerProcess
) -> None:
    job, events = _chatter(alice, chunks=1, lines=0, alloc_bytes=500 * MB)
    events.close()
    job = wait_for_job(job.pk, until=FINAL, timeout=60)
    assert job.status == Job.Status.SUCCEEDED, job.error
    chunk = job.chunks.get()
    assert chunk.peak_rss is not None
    assert chunk.start_rss is not None
    grew = chunk.peak_rss - chunk.start_rss
    print(f"peak {chunk.peak_rss:,} - start {chunk.start_rss:,} = {grew:,} bytes")
    assert abs(grew - 500 * MB) <= 50 * MB
    assert job.peak_rss == chunk.peak_rss


def _worker_rss(worker: ServerProcess) -> int:
    return max(int(child.memory_info().rss) for child in worker.children())


def test_printing_a_megabyte_per_chunk_keeps_the_workers_memory_flat(
    alice: User, chatter_worker: ServerProcess
) -> None:
    def run(chunks: int) -> Job:
        job, events = _chatter(alice, chunks=chunks, lines=1, line_bytes=MB)
        events.close()
        job = wait_for_job(job.pk, until=FINAL, timeout=300)
        assert job.status == Job.Status.SUCCEEDED, job.error
        return job

    run(200)  # warm: both processes have printed and stored a megabyte already
    before = _worker_rss(chatter_worker)
    job = run(PRINT_CHUNKS)
    after = _worker_rss(chatter_worker)
    print(f"worker RSS {before:,} -> {after:,} bytes over {PRINT_CHUNKS:,} chunks of 1 MB")
    assert after - before < 16 * 1024 * 1024
    chunk = job.chunks.get(index=PRINT_CHUNKS - 1)
    assert chunk.output_cut_bytes == MB - 65536
    assert chunk.output.startswith("[… 934,464 earlier bytes cut …]\n")
    assert len(chunk.output.split("\n", 1)[1].encode()) == 65536
    assert {c.peak_rss is not None for c in job.chunks.only("peak_rss")} == {True}
    assert psutil.pid_exists(chatter_worker.process.pid)
