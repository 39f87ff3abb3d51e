"""One job of every kind through real prefork workers, daphne, PostgreSQL and Redis."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.test import Client
from PIL import Image

from jobs import kinds, services
from jobs.kinds.hash_search import digest
from jobs.kinds.wordcount import count_words
from jobs.models import Job
from tests.factories import SMALL_MANDELBROT, generated_text, make_job
from tests.processes import ServerProcess
from tests.waiting import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _worker(celery_worker: ServerProcess) -> ServerProcess:
    return celery_worker


def run_job(owner: User, kind: str, params: dict[str, Any], parallelism: int = 2) -> Job:
    job = make_job(owner, kind, parallelism=parallelism, committed=True, **params)
    job = wait_for_job(job.pk, until={"succeeded", "failed", "cancelled"})
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job


def test_montecarlo_pi_is_reproducible_through_workers(
    alice: User, celery_worker: ServerProcess
) -> None:
    params = {"samples": 400_000, "chunks": 4, "seed": 3}
    first = run_job(alice, "montecarlo_pi", params)
    second = run_job(alice, "montecarlo_pi", params)
    assert first.result == second.result
    kind = kinds.get("montecarlo_pi")
    clean = kind.clean_params(params)
    local = kind.combine(clean, [kind.run(s, lambda d, t: None) for s in kind.split(clean)])
    assert first.result == local
    # Every chunk ran in one of the worker's prefork processes, not in this one.
    worker_processes = {child.pid for child in celery_worker.children()}
    assert {c.pid for c in first.chunks.all()} <= worker_processes


def test_mandelbrot_png_result_and_band_previews(alice: User) -> None:
    job = run_job(alice, "mandelbrot", {**SMALL_MANDELBROT, "chunks": 6})
    client = Client()
    client.force_login(alice)
    response = client.get(f"/api/jobs/{job.pk}/result-file/")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    png = response.getvalue()
    assert Image.open(io.BytesIO(png)).size == (64, 48)
    download = client.get(f"/api/jobs/{job.pk}/result-file/?download=1")
    assert "attachment" in download["Content-Disposition"]
    band = client.get(f"/api/jobs/{job.pk}/chunks/5/preview/")
    assert band["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(band.content)).size == (64, 8)
    assert client.get(f"/api/jobs/{job.pk}/chunks/6/preview/").status_code == 404


def test_wordcount_counts_an_upload_like_a_single_process(alice: User) -> None:
    text = generated_text(30_000)
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("corpus.txt", text.encode())
    )
    job = run_job(alice, "wordcount", {"upload": upload.pk, "chunks": 16, "top": 3})
    expected = count_words(text)
    assert job.result is not None
    assert job.result["total_words"] == sum(expected.values())
    assert job.result["distinct_words"] == len(expected)
    assert job.done_chunks == 16


def test_hash_search_stops_at_the_first_find(alice: User) -> None:
    job = run_job(alice, "hash_search", {"prefix": "cb", "difficulty": 4, "chunks": 64})
    assert job.result is not None
    assert job.result["hash"] == digest("cb", job.result["nonce"])
    assert job.result["hash"].startswith("0000")
    assert job.done_chunks < 64
    assert job.chunks.filter(status="cancelled").exists()


def test_the_documented_example_kind_runs_end_to_end(alice: User, docs_example_kind: str) -> None:
    job = run_job(alice, docs_example_kind, {"n": 3_000_000, "chunks": 6})
    assert job.result == {"sum": sum(i * i for i in range(3_000_000))}


def test_daphne_refuses_an_oversized_upload_before_django_reads_it(
    daphne_server: str, child_env: dict[str, str]
) -> None:
    limit = int(child_env["COREBOARD_UPLOAD_MAX_BYTES"])
    content = b"x" * (limit + 2 * 1024 * 1024)
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + content + b"\r\n--B--\r\n"
    )
    request = urllib.request.Request(  # noqa: S310 - the suite's loopback daphne
        f"{daphne_server}/api/uploads/",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=B"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)  # noqa: S310 - the suite's own loopback daphne
    assert caught.value.code == 413
    assert b"larger than the limit" in caught.value.read()
