"""The stop path without processes: recording a stopped chunk before its process is
stopped, the board's decisions, the chunk time limit's validation, errors that name the
culprit (the kind's frames, the key path that is not JSON)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from jobs import kinds, options, services
from jobs.engine import chunks, culprits, slots, stopper
from jobs.engine.job_state import job_finish
from jobs.kinds.base import JobKind
from jobs.models import Chunk, Job
from tests.factories import TEST_PROCESS, claim, claim_one, make_job, start

# The misbehaving kinds of tests.kinds_stop (imported by the fixture that registers them).
SPIN = "spin"
NOT_JSON = "notjson"

pytestmark = [pytest.mark.services, pytest.mark.django_db]

OTHER_PROCESS = "test@host|2|boot"


@pytest.fixture
def stop_kinds() -> Iterator[None]:
    with kinds.temporary():
        from tests import kinds_stop  # registers them on its first import

        kinds.register(kinds_stop.Spin)
        kinds.register(kinds_stop.NotJSON)
        yield


# --- recording before stopping -------------------------------------------------------------


def test_a_stopped_chunk_of_a_cancelled_job_is_cancelled_and_its_batch_too(alice: User) -> None:
    job = make_job(alice, chunks=4)
    start(job)
    first, second = claim(job, limit=2)
    services.job_cancel(job=job)
    assert chunks.chunk_stop(job_id=job.pk, chunk_id=first.id, process=TEST_PROCESS)
    statuses = dict(job.chunks.values_list("index", "status"))
    assert statuses == {0: "cancelled", 1: "cancelled", 2: "cancelled", 3: "cancelled"}
    job.refresh_from_db()
    assert (job.done_chunks, job.failed_chunks) == (0, 0)
    # Recorded once: a second look (or the child's own late outcome) changes nothing.
    assert not chunks.chunk_stop(job_id=job.pk, chunk_id=first.id, process=TEST_PROCESS)
    chunks.chunks_record(job_id=job.pk, outcomes=[chunks.Stopped(second.id)])
    assert Chunk.objects.get(pk=second.id).status == "cancelled"


def test_a_chunk_of_a_running_job_is_not_stopped_for_a_cancel(alice: User) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    claimed = claim_one(job)
    assert not chunks.chunk_stop(job_id=job.pk, chunk_id=claimed.id, process=TEST_PROCESS)
    assert Chunk.objects.get(pk=claimed.id).status == "running"


def test_only_the_lease_owner_s_chunk_is_stopped(alice: User) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    claimed = claim_one(job)
    services.job_cancel(job=job)
    assert not chunks.chunk_stop(job_id=job.pk, chunk_id=claimed.id, process=OTHER_PROCESS)
    assert Chunk.objects.get(pk=claimed.id).status == "running"


def test_a_chunk_past_its_time_limit_fails_for_good_and_its_batch_goes_back(
    alice: User,
) -> None:
    job = make_job(alice, chunks=3)
    start(job)
    first, second = claim(job, limit=2)
    message = stopper.time_limit_message(first.index, 2)
    assert chunks.chunk_stop(job_id=job.pk, chunk_id=first.id, process=TEST_PROCESS, error=message)
    chunk = Chunk.objects.get(pk=first.id)
    assert (chunk.status, chunk.attempts, chunk.failures) == ("failed", 1, 0)
    assert chunk.error == "Chunk 0 ran past its time limit of 2 s; its process was stopped."
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.failed_chunks == 1
    assert message in job.error
    # The batch-mate was not lost: its attempt is given back (it is cancelled with the job).
    other = Chunk.objects.get(pk=second.id)
    assert (other.status, other.attempts) == ("cancelled", 0)


# --- the board ------------------------------------------------------------------------------


@pytest.fixture
def board() -> Iterator[stopper._Board]:
    stopper.board_create(entries=4)
    assert stopper._board is not None
    stopper.child_init(slot=1)
    previous = signal.getsignal(signal.SIGTERM)
    yield stopper._board
    signal.signal(signal.SIGTERM, previous)
    stopper._board = None
    stopper.child_init(slot=None)
    stopper._child["handler_pid"] = 0


def test_a_child_s_chunk_is_on_the_board_while_it_runs(board: stopper._Board) -> None:
    stopper.chunk_begin(job_id=7, chunk_id=70, index=3, limit_s=2.0)
    entry = board.read(1)
    assert (entry.pid, entry.job_id, entry.chunk_id, entry.index) == (os.getpid(), 7, 70, 3)
    assert entry.limit_s == 2.0
    stopper.chunk_end()
    assert board.read(1).chunk_id == 0


def test_a_stop_request_for_an_earlier_chunk_is_ignored(board: stopper._Board) -> None:
    stopper.chunk_begin(job_id=7, chunk_id=71, index=4, limit_s=2.0)
    assert signal.getsignal(signal.SIGTERM) is stopper._on_sigterm
    board.stop_request_set(1, 70)
    # The handler only decides; calling it here (rather than signalling this test
    # process) shows it returns for a request that names another chunk.
    stopper._on_sigterm(signal.SIGTERM, None)
    assert board.read(1).chunk_id == 71
    stopper.chunk_end()


def test_the_stopper_stops_cancelled_and_overdue_chunks_only(
    alice: User, board: stopper._Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = make_job(alice, chunks=1)
    running = make_job(alice, chunks=2)
    for job in (cancelled, running):
        start(job)
    stopping = claim_one(cancelled)
    overdue, fresh = claim(running, limit=2)
    services.job_cancel(job=cancelled)
    board.write(0, 101, cancelled.pk, stopping.id, 0, 0.0, 600.0, 0)
    board.write(1, 102, running.pk, overdue.id, 0, 0.0, 1.0, 0)
    board.write(2, 103, running.pk, fresh.id, 1, 1e12, 1.0, 0)
    recorded: list[tuple[int, str | None]] = []
    killed: list[tuple[int, int]] = []

    def chunk_stop(
        *, job_id: int, chunk_id: int, process: str, error: str | None, output: object
    ) -> bool:
        recorded.append((chunk_id, error))
        return True

    monkeypatch.setattr(stopper, "chunk_stop", chunk_stop)
    monkeypatch.setattr("os.kill", lambda pid, sig: killed.append((pid, sig)))
    stopped = stopper.Stopper(board, "test@host").tick()
    assert {entry.pid for entry in stopped} == {101, 102}
    assert recorded == [
        (stopping.id, None),
        (overdue.id, "Chunk 0 ran past its time limit of 1 s; its process was stopped."),
    ]
    assert killed == [(101, signal.SIGTERM), (102, signal.SIGTERM)]
    assert board.read(0).stop_request == stopping.id


# --- errors that name the culprit ----------------------------------------------------------------


class _Exploding(JobKind):
    name = "exploding"

    def run(self, spec: dict[str, Any], progress: Any) -> Any:
        return _divide(spec["n"])


def _divide(n: int) -> float:
    return 1 / n


def test_a_kind_s_traceback_shows_its_frames_and_hides_coreboard_s(alice: User) -> None:
    job = make_job(alice, chunks=1)
    start(job)
    claimed = claim_one(job)
    kind = _Exploding()
    outcome = slots._SlotRun(
        job_id=job.pk, process=TEST_PROCESS, node="test@host", hooks=slots.SlotHooks()
    )._run_one(kind, chunks.Claim(claimed.id, 0, {"n": 0}, 1, 0))
    assert isinstance(outcome, chunks.Raised)
    lines = outcome.error.splitlines()
    assert lines[0] == "ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last):" in lines[1]
    frames = [line for line in lines if line.lstrip().startswith("File ")]
    assert [line.rsplit(", in ", 1)[1] for line in frames] == ["run", "_divide"]
    assert "jobs/engine" not in outcome.error
    assert lines[-1] == "… 1 Coreboard frame hidden"


def test_the_kind_s_function_is_named_by_module_and_qualname(stop_kinds: None) -> None:
    assert culprits.kind_function_name(kinds.get(NOT_JSON)) == "tests.kinds_stop.NotJSON.run"

    # A short-form kind is named by its function, not by the generated class's `run`.
    assert culprits.kind_function_name(kinds.get("primes")) == "jobs.kinds.primes.primes"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"counts": [1, {2}]}, "partial['counts'][1]: a set is not JSON"),
        ({"x": float("nan")}, "partial['x']: nan is not JSON"),
        ({"t": "a\x00b"}, "partial['t']: text with a NUL character"),
    ],
)
def test_a_partial_that_is_not_json_fails_at_once_naming_its_key_path(
    alice: User, stop_kinds: None, value: Any, path: str
) -> None:
    assert culprits.json_text(value) is None
    message = culprits.not_json_message(
        kinds.get(NOT_JSON), value, what="the partial result of chunk 0", root="partial"
    )
    assert path in message
    assert message.startswith(
        "The partial result of chunk 0 of kind 'notjson' (tests.kinds_stop.NotJSON.run)"
    )


def test_json_text_takes_what_jsonb_takes() -> None:
    assert culprits.json_text({"a": [1, 2.5, "x\\u0000y", None, True]}) is not None


def test_a_slot_fails_a_non_json_partial_for_good(alice: User, stop_kinds: None) -> None:
    job = make_job(alice, NOT_JSON, chunks=1)
    start(job)
    claimed = claim_one(job)
    outcome = slots._SlotRun(
        job_id=job.pk, process=TEST_PROCESS, node="test@host", hooks=slots.SlotHooks()
    )._run_one(kinds.get(NOT_JSON), claimed)
    assert isinstance(outcome, chunks.Raised)
    assert outcome.final
    assert "partial['counts'][2]['seen']: a set is not JSON" in outcome.error


def test_a_result_that_is_not_json_fails_the_job_naming_its_key_path(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(alice, chunks=1)
    monkeypatch.setattr(type(kinds.get("burn")), "combine", lambda self, p, parts: {"r": {1}})
    job_finish(job)
    assert job.status == Job.Status.FAILED
    assert "result['r']: a set is not JSON" in job.error
    assert "kind 'burn'" in job.error


# --- a job's chunk time limit ---------------------------------------------------------------


def test_a_job_may_ask_for_a_lower_chunk_time_limit(alice: User, settings: Any) -> None:
    settings.COREBOARD_CHUNK_TIME_LIMIT_S = 600
    job = make_job(alice, chunk_time_limit_s=5)
    assert job.chunk_time_limit_s == 5
    assert make_job(alice).chunk_time_limit_s is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "Must be between 1 and 30 s (the kind's time limit)."),
        (31, "Must be between 1 and 30 s (the kind's time limit)."),
        ("10", "Must be a JSON integer, not a string."),
    ],
)
def test_a_chunk_time_limit_outside_the_kind_s_is_refused(
    alice: User, settings: Any, monkeypatch: pytest.MonkeyPatch, value: Any, message: str
) -> None:
    settings.COREBOARD_CHUNK_TIME_LIMIT_S = 600
    monkeypatch.setattr(type(kinds.get("burn")), "time_limit_s", 30)
    with pytest.raises(services.Rejected) as refused:
        make_job(alice, chunk_time_limit_s=value)
    assert refused.value.errors == {"chunk_time_limit_s": [message]}


def test_a_kind_s_limit_is_capped_by_the_global_one(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.COREBOARD_CHUNK_TIME_LIMIT_S = 100
    burn = kinds.get("burn")
    assert options.kind_time_limit_s(burn) == 100
    monkeypatch.setattr(type(burn), "time_limit_s", 1000)
    assert options.kind_time_limit_s(burn) == 100
    monkeypatch.setattr(type(burn), "time_limit_s", 10)
    assert options.chunk_time_limit_s(burn, None) == 10
    assert options.chunk_time_limit_s(burn, 3) == 3


def test_a_child_that_ignores_sigterm_gets_sigkill_after_the_grace(
    board: stopper._Board, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.COREBOARD_KILL_GRACE_MS = 100
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline() == "ready\n"
        board.write(0, stubborn.pid, 5, 50, 0, 0.0, 1.0, 0)
        monkeypatch.setattr(stopper, "chunk_stop", lambda **kwargs: True)
        gone: list[bool] = []
        watch = stopper.Stopper(board, "test@host", on_child_gone=lambda: gone.append(True))
        (stopped,) = watch.tick()
        assert stopped.pid == stubborn.pid
        time.sleep(0.2)
        assert stubborn.poll() is None  # SIGTERM ignored
        watch.tick()  # past the grace: SIGKILL
        assert stubborn.wait(timeout=5) == -signal.SIGKILL
        watch.tick()
        assert gone == [True]
        assert board.read(0).pid == 0
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
