"""Chunk output and a job's process samples through the API (jobs/api/jobs.py, selectors in
jobs/selectors/output.py): owner-only, offsets, live tails of running chunks."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import protocol
from jobs.engine import chunks, output, redis_clients
from jobs.engine.output import Captured, OutputBuffer
from jobs.engine.resources import Usage
from jobs.models import Job, ProcessSample
from jobs.selectors import jobs as selectors
from tests.factories import CHUNK_FIELDS, claim_one, start

pytestmark = [pytest.mark.api, pytest.mark.django_db]

USAGE = Usage(cpu_user_s=0.25, cpu_system_s=0.05, start_rss=50_000_000, peak_rss=80_000_000)


def _record_done(job: Job, text: str, limit: int = 64) -> chunks.Claim:
    claimed = claim_one(job)
    buffer = OutputBuffer(limit)
    buffer.write(text)
    now = timezone.now()
    outcome = chunks.Done(
        claimed.id, {"iterations": 1}, 0.3, now, now, usage=USAGE, output=Captured.of(buffer)
    )
    chunks.chunks_record(job_id=job.pk, outcomes=[outcome])
    return claimed


def test_a_finished_chunks_output_from_an_offset(alice_api: APIClient, alice_job: Job) -> None:
    start(alice_job)
    claimed = _record_done(alice_job, "hello\nwörld\n")
    url = f"/api/jobs/{alice_job.pk}/chunks/{claimed.index}/output/"
    whole = alice_api.get(url).json()
    assert whole == {
        "job": alice_job.pk,
        "index": claimed.index,
        "status": "done",
        "offset": 0,
        "text": "hello\nwörld\n",
        "cut_bytes": 0,
        "running": False,
    }
    later = alice_api.get(url, {"offset": 6}).json()
    assert (later["offset"], later["text"]) == (6, "wörld\n")
    # Inside the two bytes of "ö": from the next whole character.
    inside = alice_api.get(url, {"offset": 8}).json()
    assert (inside["offset"], inside["text"]) == (9, "rld\n")
    assert alice_api.get(url, {"offset": 999}).json()["text"] == ""
    assert alice_api.get(url, {"offset": "-1"}).status_code == 400


def test_a_cut_output_keeps_the_tail_with_a_marker_and_counts_every_byte(
    alice_api: APIClient, alice_job: Job
) -> None:
    start(alice_job)
    claimed = _record_done(alice_job, "x" * 1000 + "the end\n", limit=20)
    stored = alice_job.chunks.get(index=claimed.index)
    assert stored.output == "[… 988 earlier bytes cut …]\nxxxxxxxxxxxxthe end\n"
    assert stored.output_cut_bytes == 988
    body = alice_api.get(f"/api/jobs/{alice_job.pk}/chunks/{claimed.index}/output/").json()
    assert (body["offset"], body["cut_bytes"], body["text"]) == (988, 988, "x" * 12 + "the end\n")
    # Asked from a cut byte: from the first one kept.
    again = alice_api.get(
        f"/api/jobs/{alice_job.pk}/chunks/{claimed.index}/output/", {"offset": 5}
    ).json()
    assert again["offset"] == 988
    listed = alice_api.get(f"/api/jobs/{alice_job.pk}/chunks/").json()["results"]
    chunk = next(c for c in listed if c["index"] == claimed.index)
    assert set(chunk) == CHUNK_FIELDS
    assert chunk["output_bytes"] == 1008
    assert (chunk["peak_rss"], chunk["start_rss"]) == (80_000_000, 50_000_000)
    assert (chunk["cpu_user_s"], chunk["cpu_system_s"]) == (0.25, 0.05)
    alice_job.refresh_from_db()
    assert alice_job.peak_rss == 80_000_000


def test_output_bytes_in_sql_equals_python_for_any_cut(alice_job: Job) -> None:
    """selectors.job_chunks counts a chunk's bytes in SQL without loading its text: it
    must agree with the stored marker (protocol.output_cut_marker)."""
    for index, (cut, text) in enumerate(
        [(0, ""), (0, "ab€"), (7, "tail"), (1_234_567, "ü"), (10**15, "x")]
    ):
        alice_job.chunks.filter(index=index % 4).update(
            output=(protocol.output_cut_marker(cut) if cut else "") + text, output_cut_bytes=cut
        )
        chunk = next(c for c in selectors.job_chunks(alice_job) if c.index == index % 4)
        assert protocol.chunk_state(chunk)["output_bytes"] == cut + len(text.encode())
        loaded = alice_job.chunks.get(index=index % 4)
        assert protocol.chunk_output_bytes(loaded) == cut + len(text.encode())


def test_a_running_chunk_reads_its_live_tail(alice_api: APIClient, alice_job: Job) -> None:
    start(alice_job)
    claimed = claim_one(alice_job)
    url = f"/api/jobs/{alice_job.pk}/chunks/{claimed.index}/output/"
    # Nothing live yet: what its row holds, and it runs.
    empty = alice_api.get(url).json()
    assert (empty["text"], empty["running"], empty["status"]) == ("", True, "running")
    client = redis_clients.for_url(settings.CHANNEL_LAYER_REDIS_URL)
    key = output.live_tail_key(alice_job.pk, claimed.index)
    client.set(key, json.dumps({"offset": 100, "text": "step 7\nstep 8\n"}), ex=60)
    try:
        body = alice_api.get(url, {"offset": 107}).json()
        assert body == {
            "job": alice_job.pk,
            "index": claimed.index,
            "status": "running",
            "offset": 107,
            "text": "step 8\n",
            "cut_bytes": 100,
            "running": True,
        }
        listed = alice_api.get(f"/api/jobs/{alice_job.pk}/output/").json()
        assert listed["chunks"] == [
            {k: v for k, v in body.items() if k != "job"}
            | {"offset": 100, "text": "step 7\nstep 8\n"}
        ]
    finally:
        client.delete(key)


def test_the_jobs_output_lists_the_chunks_that_wrote_anything(
    alice_api: APIClient, alice_job: Job
) -> None:
    start(alice_job)
    first = _record_done(alice_job, "one\n")
    _record_done(alice_job, "")
    third = _record_done(alice_job, "three\n")
    body = alice_api.get(f"/api/jobs/{alice_job.pk}/output/").json()
    assert body["job"] == alice_job.pk
    assert [(c["index"], c["text"]) for c in body["chunks"]] == [
        (first.index, "one\n"),
        (third.index, "three\n"),
    ]


def test_resources_are_the_jobs_samples_oldest_first(alice_api: APIClient, alice_job: Job) -> None:
    now = timezone.now()
    process = "alpha@host|4242|boot1"
    ProcessSample.objects.bulk_create(
        [
            ProcessSample(job=alice_job, process=process, at=now, cpu_percent=99.5, rss=2000),
            ProcessSample(
                job=alice_job,
                process=process,
                at=now - timedelta(seconds=1),
                cpu_percent=50.0,
                rss=1000,
            ),
        ]
    )
    body = alice_api.get(f"/api/jobs/{alice_job.pk}/resources/").json()
    assert body == {
        "job": alice_job.pk,
        "samples": [
            {
                "process": process,
                "pid": 4242,
                "at": (now - timedelta(seconds=1)).isoformat(),
                "cpu_percent": 50.0,
                "rss": 1000,
            },
            {
                "process": process,
                "pid": 4242,
                "at": now.isoformat(),
                "cpu_percent": 99.5,
                "rss": 2000,
            },
        ],
    }


def test_another_users_jobs_output_and_resources_are_not_found(
    mallory_api: APIClient, alice_api: APIClient, alice_job: Job
) -> None:
    start(alice_job)
    claimed = _record_done(alice_job, "secret\n")
    for url in (
        f"/api/jobs/{alice_job.pk}/chunks/{claimed.index}/output/",
        f"/api/jobs/{alice_job.pk}/output/",
        f"/api/jobs/{alice_job.pk}/resources/",
    ):
        assert mallory_api.get(url).status_code == 404
        assert alice_api.get(url).status_code == 200
    assert alice_api.get(f"/api/jobs/{alice_job.pk}/chunks/99/output/").status_code == 404
