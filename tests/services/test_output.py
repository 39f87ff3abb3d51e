"""A chunk's output and resources in one process (jobs/engine/output.py, resources.py): the
bounded buffer and its cut marker, the redirection of stdout, stderr and logging to the
running chunk only, the log context, the peak-memory and CPU meter, and a failed or
cancelled chunk keeping what it printed."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from jobs import protocol
from jobs.engine import chunks, events, output, redis_clients, resources
from jobs.engine.output import Captured, OutputBuffer
from jobs.models import Chunk
from tests.factories import claim_one, make_job, start

pytestmark = [pytest.mark.services]

MB = 1_000_000


def test_the_buffer_keeps_the_last_bytes_and_counts_all_of_them() -> None:
    buffer = OutputBuffer(10)
    for part in ("abc", "defgh", "ijklmnop"):
        buffer.write(part)
    assert buffer.total == 16
    assert buffer.tail() == (6, "ghijklmnop")
    assert buffer.cut_bytes == 6
    assert buffer.tail(since=12) == (12, "mnop")
    assert buffer.tail(since=2) == (6, "ghijklmnop")
    assert buffer.tail(since=99) == (16, "")


def test_a_cut_inside_a_character_starts_at_the_next_whole_one() -> None:
    buffer = OutputBuffer(5)
    buffer.write("aé€b")  # 1 + 2 + 3 + 1 bytes: the last 5 start inside "é"
    assert buffer.tail() == (3, "€b")
    assert buffer.cut_bytes == 3
    assert Captured.of(buffer) == Captured("[… 3 earlier bytes cut …]\n€b", 3, 7)


def test_the_buffer_holds_at_most_twice_its_bound_however_much_is_written() -> None:
    buffer = OutputBuffer(64 * 1024)
    line = "x" * 999 + "\n"
    for _ in range(10_000):
        buffer.write(line)
        assert len(buffer._data) <= 2 * 64 * 1024
    buffer.write("y" * MB)
    assert len(buffer._data) == 64 * 1024
    assert buffer.total == 10_000 * 1000 + MB


def test_the_marker_comes_off_again_exactly() -> None:
    for cut in (1, 999, 1_234_567):
        stored = protocol.output_cut_marker(cut) + "tail"
        assert protocol.output_without_marker(stored, cut) == "tail"
    assert protocol.output_cut_marker(1_234_567) == "[… 1,234,567 earlier bytes cut …]\n"
    assert protocol.output_without_marker("[… 5 earlier bytes cut …]\nx", 0) == (
        "[… 5 earlier bytes cut …]\nx"
    )


@pytest.fixture
def capturing(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], tuple[io.StringIO, io.StringIO]]]:
    """Redirects this process as a worker's is, for this test only; call it in the test's
    body (pytest sets its own sys.stdout between setup and the call): the streams it
    replaced."""
    settings.COREBOARD_CHUNK_CAPTURE = True
    settings.COREBOARD_CHUNK_OUTPUT_BYTES = 1000
    root = logging.getLogger()
    before = list(root.handlers)

    def install() -> tuple[io.StringIO, io.StringIO]:
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setattr(output, "_installed_in", None)
        monkeypatch.setattr(output, "_flusher", None)
        output.capture_install()
        monkeypatch.setattr(output, "_flusher", None)  # nothing published from here
        return out, err

    yield install
    output._current = None
    root.handlers[:] = before


def test_a_chunks_prints_and_logs_go_to_its_output_and_nowhere_else(
    capturing: Callable[[], tuple[io.StringIO, io.StringIO]],
) -> None:
    out, err = capturing()
    print("before any chunk")
    output.chunk_output_begin(7, 3)
    assert output.log_context() == " job=7 chunk=3"
    print("hello from the chunk")
    sys.stderr.write("a warning\n")
    logging.getLogger("kinds.mine").warning("logged %d", 42)
    written: list[str] = []
    own = threading.Thread(
        target=lambda: written.append(str(print("coreboard's own"))), name="coreboard-test"
    )
    own.start()
    own.join()
    captured = output.chunk_output_end()
    assert output.log_context() == ""
    print("after it")
    lines = captured.output.splitlines()
    assert lines[:2] == ["hello from the chunk", "a warning"]
    assert lines[2].endswith(" WARNING kinds.mine: logged 42")
    assert len(lines) == 3
    assert captured.cut_bytes == 0
    assert captured.total_bytes == len(captured.output.encode())
    assert out.getvalue() == "before any chunk\ncoreboard's own\nafter it\n"
    assert err.getvalue() == ""


def test_every_log_record_names_the_running_chunk_in_every_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    output.log_context_install()
    output.log_context_install()  # once only
    formatter = logging.Formatter(settings.CELERY_WORKER_LOG_FORMAT)
    output._current = output._Running(12, 3, OutputBuffer(0), " job=12 chunk=3")
    try:
        # Any logger, whatever its handlers (billiard's has its own): the format works.
        record = logging.getLogger("billiard").makeRecord(
            "billiard", logging.INFO, "", 1, "m", (), None
        )
        assert formatter.format(record).endswith(" job=12 chunk=3 m")
    finally:
        output._current = None
    record = logging.getLogger("x").makeRecord("x", logging.INFO, "", 1, "m", (), None)
    assert formatter.format(record).endswith("] m")


def test_capture_off_leaves_the_streams_alone(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.COREBOARD_CHUNK_CAPTURE = False
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(output, "_installed_in", None)
    output.capture_install()
    assert sys.stdout is out
    output.chunk_output_begin(1, 0)
    print("not captured")
    assert output.chunk_output_end() == output.NOTHING
    assert out.getvalue() == "not captured\n"


def test_the_meter_sees_a_peak_that_is_gone_by_the_end_and_user_cpu() -> None:
    meter = resources.ChunkMeter()
    block = b"\x01" * (100 * MB)
    total = sum(range(10_000_000))  # about 0.1 s of CPU: well over the 10 ms asked
    del block
    usage = meter.stop()
    assert total
    grew = usage.peak_rss - usage.start_rss
    assert abs(grew - 100 * MB) <= 10 * MB, grew
    assert resources.rss_now() < usage.peak_rss - 50 * MB
    assert usage.cpu_user_s > 0.01
    assert usage.cpu_seconds == usage.cpu_user_s + usage.cpu_system_s


def test_stored_samples_thin_out_as_a_job_piles_them_up() -> None:
    assert resources.store_interval_s(0) == 1.0
    assert resources.store_interval_s(999) == 1.0
    assert resources.store_interval_s(1000) == 2.0
    assert resources.store_interval_s(3500) == 8.0


@pytest.mark.django_db
def test_a_failed_or_cancelled_chunk_keeps_what_it_printed(alice: User) -> None:
    job = make_job(alice, chunks=4)
    start(job)
    usage = resources.Usage(cpu_user_s=0.5, cpu_system_s=0.1, start_rss=10, peak_rss=900)
    buffer = OutputBuffer(100)
    buffer.write("computing...\n")
    printed = Captured.of(buffer)
    failing = claim_one(job)
    now = timezone.now()
    chunks.chunks_record(
        job_id=job.pk,
        outcomes=[
            chunks.Raised(
                failing.id, "Traceback", now, now, final=True, usage=usage, output=printed
            )
        ],
    )
    failed = Chunk.objects.get(pk=failing.id)
    assert (failed.status, failed.output, failed.peak_rss) == ("failed", "computing...\n", 900)
    job.refresh_from_db()
    assert job.peak_rss == 900

    other = make_job(alice, chunks=2)
    start(other)
    stopped = claim_one(other)
    other.status = "cancelled"
    other.save(update_fields=["status"])
    chunks.chunks_record(
        job_id=other.pk, outcomes=[chunks.Stopped(stopped.id, usage=usage, output=printed)]
    )
    cancelled = Chunk.objects.get(pk=stopped.id)
    assert (cancelled.status, cancelled.output, cancelled.cpu_user_s) == (
        "cancelled",
        "computing...\n",
        0.5,
    )


def test_the_flusher_sends_new_text_by_offset_and_keeps_a_running_tail_in_redis(
    capturing: Callable[[], tuple[io.StringIO, io.StringIO]], monkeypatch: pytest.MonkeyPatch
) -> None:
    capturing()
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "event_publish", lambda job_id, event: sent.append(event))
    flusher = output._Flusher(thread=False)
    monkeypatch.setattr(output, "_flusher", flusher)
    client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
    key = output.live_tail_key(4242, 0)
    client.delete(key)
    output.chunk_output_begin(4242, 0)
    print("abc")
    flusher.flush()
    print("de")
    flusher.flush()
    assert client.ttl(key) > output.ENDED_TAIL_TTL_S
    output.chunk_output_end()
    flusher.flush()
    flusher.flush()  # nothing new: nothing sent
    messages = [event["message"] for event in sent]
    assert [(m["offset"], m["text"]) for m in messages] == [(0, "abc\n"), (4, "de\n"), (7, "")]
    assert {m["type"] for m in messages} == {"chunk.output"}
    assert {event["type"] for event in sent} == {"chunk.printed"}
    assert output.live_tails(4242, [0, 1]) == {0: output.LiveTail(0, "abc\nde\n")}
    assert 0 < client.ttl(key) <= output.ENDED_TAIL_TTL_S
    client.delete(key)


def test_chunks_that_end_between_flushes_send_a_bounded_amount_and_skip_redis(
    capturing: Callable[[], tuple[io.StringIO, io.StringIO]],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capturing()
    settings.COREBOARD_CHUNK_OUTPUT_BYTES = 1_000_000
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "event_publish", lambda job_id, event: sent.append(event))
    flusher = output._Flusher(thread=False)
    monkeypatch.setattr(output, "_flusher", flusher)
    for index in range(6):
        output.chunk_output_begin(4343, index)
        sys.stdout.write("z" * 100_000)
        output.chunk_output_end()
    flusher.flush()
    messages = [event["message"] for event in sent]
    assert [m["index"] for m in messages] == list(range(6))
    # The last 64 KB of each, until 256 KB went out; then the whole length, no text.
    live = output.LIVE_MESSAGE_BYTES
    assert [(m["offset"], len(m["text"])) for m in messages] == [(100_000 - live, live)] * 4 + [
        (100_000, 0)
    ] * 2
    assert output.live_tails(4343, list(range(6))) == {}


def test_a_killed_chunks_output_can_be_taken_from_its_live_tail() -> None:
    client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
    key = output.live_tail_key(4444, 2)
    client.set(key, '{"offset": 10, "text": "spinning\\n"}', ex=60)
    try:
        assert output.live_captured(4444, 2) == Captured(
            "[… 10 earlier bytes cut …]\nspinning\n", 10, 19
        )
        assert output.live_captured(4444, 3) is None
    finally:
        client.delete(key)
