"""Reads of what chunks wrote and of a job's process samples (the shapes: jobs/protocol.py).

A running chunk's output is read from its live tail in Redis (jobs.engine.output), an
ended one's from its row; a running chunk with no live tail yet shows what its row holds.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404

from jobs import protocol
from jobs.engine import output as live_output
from jobs.models import Chunk, Job
from jobs.protocol import ChunkOutputItem, ChunkOutputState, JobOutputState, JobResourcesState

# The most samples GET /api/jobs/<id>/resources/ returns (the engine stores at most
# jobs.engine.resources.MAX_SAMPLES_PER_JOB per job).
MAX_RESOURCE_SAMPLES = 20_000


def _from_offset(offset: int, text: str, since: int | None) -> tuple[int, str]:
    """The part of `text` (starting at byte `offset`) from byte `since` on, or all of it
    when `since` is not given or was cut."""
    if since is None or since <= offset:
        return offset, text
    data = text.encode()
    skip = min(since - offset, len(data))
    # An offset inside a character moves to the next whole one.
    while skip < len(data) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return offset + skip, data[skip:].decode()


def _item(chunk: Chunk, tail: live_output.LiveTail | None, since: int | None) -> ChunkOutputItem:
    running = chunk.status == Chunk.Status.RUNNING
    if running and tail is not None:
        offset, text, cut = tail.offset, tail.text, tail.offset
    else:
        cut = chunk.output_cut_bytes
        offset, text = cut, protocol.output_without_marker(chunk.output, cut)
    offset, text = _from_offset(offset, text, since)
    return {
        "index": chunk.index,
        "status": chunk.status,
        "offset": offset,
        "text": text,
        "cut_bytes": cut,
        "running": running,
    }


def chunk_output(*, job: Job, index: int, offset: int | None = None) -> ChunkOutputState:
    """What one chunk of a job wrote, from byte `offset` on while still retained; Http404
    when the job has no such chunk."""
    chunk = job.chunks.only("index", "status", "output", "output_cut_bytes").filter(index=index)
    found = chunk.first()
    if found is None:
        raise Http404("No such chunk.")
    tails = live_output.live_tails(job.pk, [index]) if found.status == Chunk.Status.RUNNING else {}
    return {"job": job.pk, **_item(found, tails.get(index), offset)}


def job_output(*, job: Job) -> JobOutputState:
    """The output of the job's chunks that wrote anything (or run now), by index."""
    chunks = list(
        job.chunks.filter(
            ~Q(output="") | Q(output_cut_bytes__gt=0) | Q(status=Chunk.Status.RUNNING)
        )
        .only("index", "status", "output", "output_cut_bytes")
        .order_by("index")
    )
    running = [chunk.index for chunk in chunks if chunk.status == Chunk.Status.RUNNING]
    tails = live_output.live_tails(job.pk, running)
    items = [_item(chunk, tails.get(chunk.index), None) for chunk in chunks]
    return {
        "job": job.pk,
        "chunks": [item for item in items if item["text"] or item["cut_bytes"]],
    }


def job_resources(*, job: Job) -> JobResourcesState:
    """The job's stored process samples, oldest first."""
    rows = job.process_samples.order_by("at", "id").values_list(
        "process", "at", "cpu_percent", "rss"
    )[:MAX_RESOURCE_SAMPLES]
    return {
        "job": job.pk,
        "samples": [
            protocol.resource_sample(process=process, at=at.isoformat(), cpu_percent=cpu, rss=rss)
            for process, at, cpu, rss in rows
        ],
    }
