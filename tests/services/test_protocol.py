"""The wire protocol's contract: builders fill exactly the fields jobs/protocol.py declares
(docs/protocol.md is generated from the same declarations, tests/services/test_docs.py),
the public message types stay what clients read, and the timings that SQL computes equal
the model's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from jobs import protocol
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from jobs.sockets import consumers
from tests.factories import claim_one, complete, figures_settle, make_job, start

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def test_builders_fill_exactly_the_declared_fields(alice: User) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    complete(job, claim_one(job))
    job.refresh_from_db()
    assert set(protocol.job_state(job)) == protocol.field_names(protocol.JobState)
    assert set(selectors.job_as_api_dict(job)) == protocol.field_names(protocol.JobApiState)
    chunk = job.chunks.get(index=0)
    assert set(protocol.chunk_state(chunk)) == protocol.field_names(protocol.ChunkState)
    assert set(selectors.job_live(job)) == protocol.field_names(protocol.LiveState)
    overview = selectors.overview(user=alice)
    assert set(overview) == protocol.field_names(protocol.JobsOverview)
    assert set(overview["active"][0]) == protocol.field_names(protocol.ActiveJobState)
    snapshot = selectors.job_snapshot(job_id=job.pk)
    assert snapshot is not None
    assert set(snapshot.lanes[0]) == protocol.field_names(protocol.LaneState)
    message = protocol.job_snapshot_message(
        seq=1,
        job=snapshot.job,
        grid=snapshot.grid,
        lanes=snapshot.lanes,
        peak=snapshot.peak,
        chunks=snapshot.pages[0],
        chunk_pages=len(snapshot.pages),
        live=None,
    )
    assert set(message) == protocol.field_names(protocol.JobSnapshotMessage)
    # Every chunk's status packed; full states only for the chunks that ran (the window).
    assert protocol.grid_unpack(message["grid"]) == [("done", False), ("pending", False)]
    assert [c["index"] for c in message["chunks"]] == [0]


def test_chunk_deltas_carry_the_chunks_running_status() -> None:
    claimed = protocol.chunk_claimed_delta(index=3, attempts=1, worker="w", pid=7, at="t")
    progressed = protocol.chunk_progress_delta(3, 0.123456)
    declared = protocol.field_names(protocol.ChunkState)
    assert set(claimed) == declared - {"cpu_seconds", "error"}
    assert set(progressed) == {"index", "status", "progress"}
    assert claimed["status"] == progressed["status"] == Chunk.Status.RUNNING
    assert progressed["progress"] == 0.1235


def test_public_message_types_are_what_clients_read() -> None:
    # The pages (static/jobs/*.mjs) and the command line client switch on these strings.
    assert protocol.PUBLIC_MESSAGE_TYPES == (
        "job.snapshot",
        "job.chunks",
        "job.progress",
        "job.live",
        "chunk.output",
        "job.resources",
        "overview.state",
        "error",
        "broker.state",
        "resync",
    )
    assert protocol.error_message("no")["type"] == "error"
    assert protocol.is_resync({"type": "resync"})
    assert not protocol.is_resync({"type": "job.snapshot"})
    assert not protocol.is_resync(["resync"])


def test_channel_layer_events_are_not_public_types_and_have_a_handler() -> None:
    public = {protocol.JOB_SNAPSHOT, protocol.JOB_CHUNKS, protocol.JOB_PROGRESS}
    public |= {protocol.JOB_LIVE, protocol.OVERVIEW_STATE, protocol.ERROR}
    public |= {protocol.CHUNK_OUTPUT, protocol.JOB_RESOURCES}
    for event, consumer in (
        (protocol.EVENT_JOB_CHANGED, consumers.JobConsumer),
        (protocol.EVENT_CLUSTER_CHANGED, consumers.OverviewConsumer),
        (protocol.EVENT_CHUNK_PRINTED, consumers.JobConsumer),
        (protocol.EVENT_JOB_SAMPLED, consumers.JobConsumer),
    ):
        assert event not in public
        # Channels calls the method named after the event's type, dots as underscores.
        assert callable(getattr(consumer, event.replace(".", "_")))
    # A public type must not reach a handler: a client could not send one, and a producer
    # that sent one would bypass the consumer's sequence checks.
    assert not hasattr(consumers.JobConsumer, "job_progress")
    assert not hasattr(consumers.JobConsumer, "chunk_output")
    assert not hasattr(consumers.JobConsumer, "job_resources")


def test_timings_in_sql_equal_the_model_properties(alice: User) -> None:
    """JobQuerySet.with_timings() and Job's properties share one formula (jobs/scaling.py);
    they agree on every kind of job: not started, zero wall time, fixed parallelism, all
    processes (efficiency against the processes that ran it), failed (no speedup)."""
    now = timezone.now()
    fixed = make_job(alice, parallelism=4, chunks=4)
    every = make_job(alice, parallelism=None, chunks=2)
    failed = make_job(alice, parallelism=2)
    instant = make_job(alice, parallelism=2)
    unstarted = make_job(alice, parallelism=2)
    Job.objects.filter(pk__in=[fixed.pk, every.pk, failed.pk]).update(
        started_at=now - timedelta(seconds=8), finished_at=now, cpu_seconds=12.0
    )
    Job.objects.exclude(pk=failed.pk).update(status=Job.Status.SUCCEEDED)
    Job.objects.filter(pk=failed.pk).update(status=Job.Status.FAILED)
    Job.objects.filter(pk=instant.pk).update(started_at=now, finished_at=now, cpu_seconds=1.0)
    for job in (fixed, every):
        job.chunks.update(status=Chunk.Status.DONE, worker="w@h", pid=11)
        job.chunks.filter(index=1).update(pid=12)
        job.refresh_from_db()
        figures_settle(job)
    timed = {job.pk: job for job in Job.objects.with_timings()}
    expected = {
        # wall, speedup, its baseline, parallelism achieved, efficiency
        fixed.pk: (8.0, 1.5, "cpu", 1.5, 1.5 / 2),
        every.pk: (8.0, 1.5, "cpu", 1.5, 1.5 / 2),
        failed.pk: (8.0, None, None, 1.5, None),
        instant.pk: (0.0, None, None, None, None),
        unstarted.pk: (None, None, None, None, None),
    }
    for pk, figures in expected.items():
        plain = Job.objects.get(pk=pk)
        sql = timed[pk]
        for figure, value in zip(
            ("wall_seconds", "speedup", "speedup_baseline", "parallelism_achieved", "efficiency"),
            figures,
            strict=True,
        ):
            assert getattr(sql, figure) == pytest.approx(value), (pk, figure)
            assert getattr(plain, figure) == pytest.approx(value), (pk, figure)
        assert sql.timed_speedup_baseline == plain.speedup_baseline  # type: ignore[attr-defined]


def test_the_packed_grid_places_each_chunk_by_its_index(alice: User) -> None:
    job = make_job(alice, chunks=4)
    job.chunks.filter(index=2).update(status=Chunk.Status.DONE, attempts=2)
    assert protocol.grid_unpack(selectors.job_chunk_grid(job)) == [
        ("pending", False),
        ("pending", False),
        ("done", True),
        ("pending", False),
    ]
    # Indices that are not 0..n-1 (PostgreSQL packs in order) are still placed by index.
    job.chunks.filter(index=1).delete()
    assert [status for status, _ in protocol.grid_unpack(selectors.job_chunk_grid(job))] == [
        "pending",
        "pending",
        "done",
        "pending",
    ]
