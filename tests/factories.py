"""Object builders and engine steps for tests: one way to make a job (`make_job`), claim and
finish its chunks, and the clients, inputs and shapes several test modules share.

Test modules import from here (and from tests/waiting.py, tests/sockets.py,
tests/processes.py, tests/metrics_scrape.py, tests/schema_checks.py), never from one another
or from conftest.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from django import db
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import kinds, protocol, services
from jobs.engine import chunks, job_state, workers
from jobs.models import Chunk, Job, ScalingStudy, Webhook
from jobs.selectors.schedules import Timing
from jobs.services import schedules, sweeps

T = TypeVar("T")

# A worker process id (jobs.engine.workers.process_id): node, pid, boot.
TEST_PROCESS = "test@host|1|boot"

# A burn job's parameters unless a test says otherwise: four chunks that take no time.
BURN_DEFAULTS: dict[str, Any] = {"chunks": 4, "ms": 1}

# --- jobs --------------------------------------------------------------------------------------


def make_job(
    owner: User,
    kind: str = "burn",
    *,
    parallelism: int | None = 2,
    committed: bool = False,
    chunk_time_limit_s: int | None = None,
    priority: str | None = None,
    **params: Any,
) -> Job:
    """A job made the way people make one (the service: validated, split into chunks).

    `params` are the kind's parameters; a burn job starts from BURN_DEFAULTS. `committed`
    creates it in a transaction of its own, so that it is dispatched after commit to the
    real workers of integration tests (in a transactional test).
    """
    if kind == "burn":
        params = BURN_DEFAULTS | params
    with transaction.atomic() if committed else contextlib.nullcontext():
        return services.job_create(
            owner=owner,
            kind=kind,
            params=params,
            parallelism=parallelism,
            chunk_time_limit_s=chunk_time_limit_s,
            priority=priority,
        )


def make_ended_job(owner: User, *, chunks: int = 3) -> Job:
    """A burn job that only feeds a live socket: cancelled at once, so the real workers that
    integration tests run (their reconcilers see every active job) leave it alone."""
    job = make_job(owner, chunks=chunks)
    services.job_cancel(job=job)
    return job


def make_unclaimable_job(owner: User) -> Job:
    """An active (pending) job that no worker will touch: it has no chunks to claim yet."""
    return Job.objects.create(owner=owner, kind="burn", params={}, parallelism=1)


def chunk_statuses(job: Job) -> dict[int, str]:
    return dict(job.chunks.values_list("index", "status"))


# --- engine steps: what a slot does ------------------------------------------------------------


def start(job: Job) -> None:
    """What a job's first slot does: mark it running."""
    chunks.job_start_if_pending(job_id=job.pk)
    job.refresh_from_db()


def claim(job: Job, *, process: str = TEST_PROCESS, limit: int = 1) -> list[chunks.Claim]:
    host, pid, _ = process.split("|")
    claimer = chunks.Claimer(process=process, worker=host, pid=int(pid))
    return chunks.chunks_claim(job_id=job.pk, claimer=claimer, limit=limit)


def claim_one(job: Job, *, process: str = TEST_PROCESS) -> chunks.Claim:
    claimed = claim(job, process=process)
    assert len(claimed) == 1, "expected a claimable chunk"
    return claimed[0]


def done(claimed: chunks.Claim, result: Any = None, cpu_seconds: float = 0.5) -> chunks.Done:
    now = timezone.now()
    return chunks.Done(claimed.id, result or {"iterations": 1}, cpu_seconds, now, now)


def complete(job: Job, claimed: chunks.Claim, result: Any = None, cpu: float = 0.5) -> None:
    chunks.chunks_record(job_id=job.pk, outcomes=[done(claimed, result, cpu)])


def complete_next(job: Job, result: Any = None, *, process: str = TEST_PROCESS) -> chunks.Claim:
    claimed = claim_one(job, process=process)
    complete(job, claimed, result)
    return claimed


def fail_next(job: Job, error: str = "Traceback...\nRuntimeError: boom") -> chunks.Claim:
    """Claim the next chunk and fail it for good (its retries used up)."""
    claimed = claim_one(job)
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Raised(claimed.id, error, final=True)])
    return claimed


# --- clients -----------------------------------------------------------------------------------


def client_for(user: User) -> Client:
    """A page client logged in as `user`."""
    client = Client()
    client.force_login(user)
    return client


def api_client_for(user: User) -> APIClient:
    """An API client authenticated as `user`."""
    client = APIClient()
    client.force_authenticate(user)
    return client


def api_client_for_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# --- inputs -------------------------------------------------------------------------------------

SMALL_MANDELBROT = {
    "width": 64, "height": 48, "max_iter": 60,
    "x_min": -2.2, "x_max": 0.8, "y_min": -1.2, "y_max": 1.2,
}  # fmt: skip


def generated_text(words: int) -> str:
    """Reproducible text in several scripts and with every kind of white space."""
    vocabulary = ["alpha", "Beta", "gamma", "déjà", "vu", "naïve", "日本語", "it's", "end."]
    spaces = [" ", "\n", "\t", "  ", "\r\n", " \u3000"]
    rnd = random.Random(7)
    return "".join(rnd.choice(vocabulary) + rnd.choice(spaces) for _ in range(words))


# Bad job input and the error it must produce: (body, path into the errors, message).
BAD_JOB_INPUT = [
    ({"kind": "nope", "params": {}}, ["kind"], "Unknown kind 'nope'"),
    ({"params": {}}, ["kind"], "required"),
    (
        {"kind": "primes", "params": {"start": 9, "stop": 3, "chunks": 1}},
        ["params", "stop"],
        "greater than Start",
    ),
    (
        {"kind": "primes", "params": {"start": 0, "stop": 10, "chunks": 0}},
        ["params", "chunks"],
        "greater than or equal to 1",
    ),
    (
        {"kind": "primes", "params": {"start": 0, "stop": 10, "chunks": 1, "x": 1}},
        ["params", "x"],
        "Unknown parameter",
    ),
    ({"kind": "primes", "params": [1, 2]}, ["params"], "dictionary"),
    (
        {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "parallelism": 0},
        ["parallelism"],
        "between 1 and",
    ),
    (
        {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "parallelism": "many"},
        ["parallelism"],
        "integer",
    ),
    (
        {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "chunk_time_limit_s": 0},
        ["chunk_time_limit_s"],
        "Must be between 1 and 600 s (the kind's time limit).",
    ),
    (
        {"kind": "burn", "params": {"chunks": 1, "ms": 1}, "chunk_time_limit_s": "5"},
        ["chunk_time_limit_s"],
        "Must be a JSON integer, not a string.",
    ),
    # Strict JSON types: no coercion of objects, booleans or digit strings.
    ({"kind": "hash_search", "params": {"prefix": {"a": 1}}}, ["params", "prefix"], "string"),
    ({"kind": "burn", "params": {"chunks": "１２"}}, ["params", "chunks"], "JSON integer"),  # noqa: RUF001
    ({"kind": "burn", "params": {"chunks": "12"}}, ["params", "chunks"], "JSON integer"),
    ({"kind": "burn", "params": {"fail_rate": True}}, ["params", "fail_rate"], "JSON number"),
    ({"kind": "burn", "params": {"chunks": 2.5}}, ["params", "chunks"], "JSON integer"),
    ({"kind": "burn", "params": {"chunks": True}}, ["params", "chunks"], "JSON integer"),
    ({"kind": "burn", "params": {}, "parallelism": "４"}, ["parallelism"], "integer"),  # noqa: RUF001
    ({"kind": "burn", "params": {}, "owner": 2}, ["owner"], "Unknown field"),
]

# --- shapes ------------------------------------------------------------------------------------

# The API's shapes, as jobs/protocol.py declares them (tests/services/test_protocol.py checks the
# builders fill exactly these).
JOB_FIELDS = set(protocol.field_names(protocol.JobApiState))
CHUNK_FIELDS = set(protocol.field_names(protocol.ChunkState))


# --- jobs that have run ------------------------------------------------------------------------

# When the hand-made runs of `finished` began.
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def finished(
    owner: User,
    *,
    chunks: int,
    run_s: float,
    gap_s: float,
    cpu_share: float = 1.0,
    processes: int = 2,
    parallelism: int = 2,
    params: dict[str, Any] | None = None,
) -> Job:
    """A burn job that ran its chunks on `processes` lanes, `gap_s` idle before each."""
    job = make_job(owner, parallelism=parallelism, **(params or {"chunks": chunks, "ms": 1}))
    return ran_on_lanes(job, run_s=run_s, gap_s=gap_s, cpu_share=cpu_share, processes=processes)


def ran_on_lanes(
    job: Job,
    *,
    run_s: float,
    gap_s: float,
    cpu_share: float = 1.0,
    processes: int = 2,
    started: datetime = T0,
) -> Job:
    """`job`, succeeded: its chunks ran one after another on `processes` lanes (chunk i on
    lane i % processes), each `gap_s` after the lane's previous one and for `run_s`, with
    `cpu_share` of that on the CPU; the job started at `started` and ended with its last
    chunk. Its stored figures are settled as the engine settles them."""
    lanes = [started] * processes
    chunks = 0
    for chunk in job.chunks.order_by("index"):
        lane = chunk.index % processes
        start = lanes[lane] + timedelta(seconds=gap_s)
        end = start + timedelta(seconds=run_s)
        lanes[lane] = end
        chunks += 1
        Chunk.objects.filter(pk=chunk.pk).update(
            status=Chunk.Status.DONE,
            worker="host",
            pid=100 + lane,
            started_at=start,
            finished_at=end,
            cpu_seconds=run_s * cpu_share,
        )
    cpu = chunks * run_s * cpu_share
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.SUCCEEDED,
        started_at=started,
        finished_at=max(lanes),
        cpu_seconds=cpu,
        done_chunks=chunks,
        result={"chunks": chunks, "iterations": 10},
    )
    job.refresh_from_db()
    figures_settle(job)
    return job


def figures_settle(job: Job) -> None:
    """What the engine stores when a job succeeds (processes used, the speedup's baseline),
    for a job made to have succeeded by hand; a parallelism-1 run also becomes the baseline
    of the owner's runs without one, as it does after the engine's commit."""
    job_state.job_figures_settle(job)
    job.save(update_fields=["processes_used", "baseline_seconds", "baseline_job"])
    if job.parallelism == 1:
        job_state.job_baseline_share(job_id=job.pk)
    job.refresh_from_db()


def finish_job(job: Job) -> None:
    start(job)
    for _ in range(job.total_chunks):
        complete_next(job)
    job.refresh_from_db()


def succeeded_job(owner: User, chunks: int = 2) -> Job:
    job = make_job(owner, chunks=chunks, parallelism=2)
    finish_job(job)
    assert job.status == Job.Status.SUCCEEDED
    return job


def study_run(study: ScalingStudy, parallelism: int) -> Job:
    """The study's run at this parallelism."""
    return study.runs.get(parallelism=parallelism)


def workers_alive(monkeypatch: pytest.MonkeyPatch, processes: int) -> None:
    """Pretend one worker with this many processes (none when 0) is alive, running every kind."""
    every_kind = frozenset(kind.name for kind in kinds.all_kinds())

    def live_workers() -> dict[str, workers.LiveWorker]:
        alive = workers.LiveWorker(concurrency=processes, kinds=every_kind)
        return {"w1": alive} if processes else {}

    monkeypatch.setattr(workers, "live_workers", live_workers)


def hold_job_lock(session: psycopg.Connection, job: Job) -> None:
    """Lock the job's row from another session, as a machine in mid-transaction does."""
    session.execute("BEGIN")
    session.execute("SELECT 1 FROM jobs_job WHERE id = %s FOR UPDATE", [job.pk])


def preflight_node_name() -> str:
    return f"preflight-{secrets.token_hex(4)}@{socket.gethostname()}"


# --- requests ----------------------------------------------------------------------------------

# A one-chunk burn job, as the API takes it (and as services.job_create's keyword arguments).
BURN: dict[str, Any] = {"kind": "burn", "params": {"chunks": 1, "ms": 1}}


def upload(api: APIClient, name: str = "words.txt", text: bytes = b"one two three") -> int:
    response = api.post("/api/uploads/", {"file": SimpleUploadedFile(name, text, "text/plain")})
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


# --- concurrency ---------------------------------------------------------------------------------


def in_parallel(attempt: Callable[[int], T], times: int = 20) -> list[T]:
    """`attempt(0)` … `attempt(times - 1)`, each in a thread of its own (so on a database
    connection of its own, closed after), released together; their results in order."""
    start_line = threading.Barrier(times)

    def run(index: int) -> T:
        try:
            start_line.wait(timeout=30)
            return attempt(index)
        finally:
            db.connections.close_all()

    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(pool.map(run, range(times)))


def make_failed_job(owner: User) -> Job:
    """A burn job of two chunks whose first failed for good."""
    job = make_job(owner, chunks=2)
    start(job)
    fail_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    return job


def active_jobs(owner: User) -> int:
    return Job.objects.filter(owner=owner, status__in=Job.ACTIVE_STATUSES).count()


def make_schedule_sweep_and_hook(owner: User) -> dict[str, int]:
    """One of each of the person's standing things, for tests that visit every route: an
    hourly burn schedule, a two-run burn sweep and a webhook; their ids by name."""
    schedule = schedules.schedule_save(
        owner=owner,
        name="sample",
        kind="burn",
        params={"chunks": 1, "ms": 1},
        timing=Timing(every=1, unit="hours"),
    )
    sweep = sweeps.sweep_create(owner=owner, kind="burn", grid={"chunks": [1, 2], "ms": [1]})
    hook = Webhook.objects.create(owner=owner, url="https://example.com/hook", secret="s")
    return {"schedule": schedule.pk, "sweep": sweep.pk, "hook": hook.pk}
