"""How jobs read to people: parameters, results, speedup explained; error pages; CSP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.test import Client

from jobs import kinds, services
from jobs.models import Chunk, Job
from jobs.views import insights, presentation
from tests.factories import make_job

pytestmark = pytest.mark.django_db

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
    lanes = [T0] * processes
    for chunk in job.chunks.order_by("index"):
        lane = chunk.index % processes
        start = lanes[lane] + timedelta(seconds=gap_s)
        end = start + timedelta(seconds=run_s)
        lanes[lane] = end
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
        started_at=T0,
        finished_at=max(lanes),
        cpu_seconds=cpu,
        done_chunks=chunks,
        result={"chunks": chunks, "iterations": 10},
    )
    job.refresh_from_db()
    return job


# --- parameters and results ------------------------------------------------------------------


@pytest.mark.services
def test_parameters_show_form_labels_in_form_order_without_internal_keys(alice: User) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("poem.txt", b"a b"))
    job = make_job(alice, "wordcount", top=5, chunks=2, upload=upload.pk)
    assert job.params["upload"] == upload.pk
    assert presentation.job_params_display(job) == [
        ("Upload", "poem.txt"),
        ("Chunks", "2"),
        ("Top", "5"),
    ]
    assert presentation.job_params_text(job) == "Upload poem.txt · Chunks 2 · Top 5"
    burn = make_job(alice, chunks=2, ms=30)
    assert presentation.job_params_display(burn)[1] == ("Milliseconds per chunk", "30")


@pytest.mark.pages
def test_job_page_lists_parameters_with_labels(alice: User, alice_client: Client) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("poem.txt", b"a b"))
    job = make_job(alice, "wordcount", upload=upload.pk, chunks=2, top=5)
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "<dt>Upload</dt><dd>poem.txt</dd><dt>Chunks</dt><dd>2</dd>" in page
    assert "storage_name" not in page.split('id="job-snapshot"')[0]


@pytest.mark.pages
def test_history_shows_and_finds_parameters_as_shown(alice: User, alice_client: Client) -> None:
    wanted = make_job(alice, chunks=3, ms=7771)
    make_job(alice, chunks=7771, ms=5)
    page = alice_client.get("/history/").content.decode()
    assert "Chunks 3 · Milliseconds per chunk 7771 · Fail rate 0" in page
    assert "<td>Burn CPU</td>" in page
    found = alice_client.get("/history/", {"q": "Milliseconds per chunk 7771"}).content.decode()
    assert f'data-job-id="{wanted.pk}"' in found
    assert found.count("<tr data-job-id=") == 1
    by_label = alice_client.get("/history/", {"q": "burn cpu"}).content.decode()
    assert by_label.count("<tr data-job-id=") == 2


@pytest.mark.pages
def test_history_kind_filter_shows_labels(alice_client: Client) -> None:
    page = alice_client.get("/history/").content.decode()
    assert '<option value="primes">Count primes</option>' in page


@pytest.mark.services
@pytest.mark.parametrize(
    ("kind", "params", "result", "shown"),
    [
        ("primes", {"start": 0, "stop": 10_000_000, "chunks": 2}, {"count": 664579},
         ("Primes found", "664,579")),
        ("montecarlo_pi", {"samples": 1000, "chunks": 1, "seed": 1},
         {"estimate": 3.1416, "std_error": 0.0012, "inside": 785, "samples": 1000},
         ("Estimate of π", "3.1416 ± 0.0012")),
        ("hash_search", {"prefix": "x", "difficulty": 1, "chunks": 1},
         {"nonce": 42, "hash": "0abc"}, ("Nonce", "42")),
    ],
)  # fmt: skip
def test_kinds_render_their_result(
    kind: str, params: dict[str, Any], result: Any, shown: tuple[str, str]
) -> None:
    display = kinds.get(kind).result_display(params, result)
    assert display is not None
    assert shown in display.figures


@pytest.mark.services
def test_wordcount_result_is_a_table() -> None:
    result = {"total_words": 7, "distinct_words": 5, "top": [["the", 3], ["cat", 1]]}
    display = kinds.get("wordcount").result_display({"top": 2}, result)
    assert display is not None
    assert ("Words", "7") in display.figures
    assert display.table_columns == ["Rank", "Word", "Count"]
    assert display.table_rows == [["1", "the", "3"], ["2", "cat", "1"]]


@pytest.mark.services
def test_every_kind_has_defaults_worth_parallelising() -> None:
    # Measured on one core of the dev machines: each default job takes 3 to 8 s, in chunks
    # of about 0.3 s or more (see docs/using.md, Job kinds).
    for kind in kinds.all_kinds():
        form = kind.form_class()
        defaults = {name: field.initial for name, field in form.fields.items()}
        if kind.upload_fields():
            continue
        params = kind.clean_params({k: v for k, v in defaults.items() if v is not None})
        assert len(kind.split(params)) >= 8, kind.name


# --- speedup explained -----------------------------------------------------------------------


@pytest.mark.services
def test_tiny_chunks_are_explained(alice: User) -> None:
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    text = " ".join(insight.notes)
    assert "Chunks averaged 2 ms of work and 15 ms of overhead each" in text
    assert "use fewer, bigger chunks" in text


@pytest.mark.services
def test_shared_cpu_is_explained_with_the_other_jobs(alice: User, bob: User) -> None:
    other = make_job(bob, chunks=1, ms=1)
    Job.objects.filter(pk=other.pk).update(status=Job.Status.RUNNING, started_at=T0)
    job = finished(alice, chunks=8, run_s=1.0, gap_s=0.01, cpu_share=0.4)
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    assert any("The CPU was shared with 1 other job" in note for note in insight.notes)


@pytest.mark.services
def test_a_good_speedup_needs_no_explanation(alice: User) -> None:
    job = finished(alice, chunks=8, run_s=1.0, gap_s=0.01)
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    assert insight.notes == []


@pytest.mark.services
def test_speedup_against_own_parallelism_1_run(alice: User, bob: User) -> None:
    params = {"chunks": 8, "ms": 1000, "fail_rate": 0.0}
    single = finished(alice, chunks=8, run_s=1.0, gap_s=0.0, processes=1, parallelism=1,
                      params=params)  # fmt: skip
    finished(bob, chunks=8, run_s=1.0, gap_s=0.0, processes=1, parallelism=1, params=params)
    double = finished(alice, chunks=8, run_s=1.0, gap_s=0.0, params=params)
    insight = insights.job_speedup_insight(double)
    assert insight is not None
    assert insight.baseline is not None
    assert insight.baseline.job_id == single.pk
    assert insight.baseline.speedup == pytest.approx(2.0)


@pytest.mark.pages
def test_job_page_explains_a_low_speedup(alice: User, alice_client: Client) -> None:
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "About this speedup" in page
    assert "Chunks averaged 2 ms of work" in page
    fragment = alice_client.get(f"/jobs/{job.pk}/summary/").content.decode()
    assert "Chunks averaged 2 ms of work" in fragment
    assert "Loop iterations" in fragment


@pytest.mark.pages
def test_summary_of_another_users_job_is_404(alice: User, mallory_client: Client) -> None:
    job = finished(alice, chunks=2, run_s=0.5, gap_s=0.0)
    assert mallory_client.get(f"/jobs/{job.pk}/summary/").status_code == 404


# --- the site around the pages ---------------------------------------------------------------


@pytest.mark.pages
def test_not_found_page_is_in_the_site_layout(alice_client: Client) -> None:
    response = alice_client.get("/jobs/999999/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page
    assert 'class="topbar"' in page
    assert "Skip to content" in page


@pytest.mark.pages
def test_forbidden_page_is_in_the_site_layout(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/jobs/new/", {"kind": "burn"})
    assert response.status_code == 403
    assert 'class="topbar"' in response.content.decode()


@pytest.mark.pages
def test_server_error_page_renders_without_a_request() -> None:
    page = render_to_string("500.html")
    assert "Something went wrong" in page
    assert 'class="topbar"' in page


@pytest.mark.pages
def test_pages_send_a_csp_without_unsafe_inline(alice_client: Client) -> None:
    response = alice_client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    page = response.content.decode()
    assert "<script>" not in page
    assert ' style="' not in page
    assert 'rel="icon"' in page


@pytest.mark.pages
def test_invalid_form_has_an_error_summary_with_labels(alice_client: Client) -> None:
    response = alice_client.post(
        "/jobs/new/",
        {"kind": "primes", "params-start": "50", "params-stop": "10", "params-chunks": "4"},
    )
    page = response.content.decode()
    assert 'id="error-summary"' in page
    assert '<a href="#id_params-stop">Stop: Must be greater than Start (50).</a>' in page


@pytest.mark.pages
def test_times_are_marked_up_for_the_viewers_zone(alice: User, alice_client: Client) -> None:
    job = make_job(alice, chunks=1, ms=1)
    Job.objects.filter(pk=job.pk).update(created_at=T0)
    page = alice_client.get("/history/").content.decode()
    assert (
        '<time datetime="2026-01-05T09:00:00+00:00" class="local-time">'
        "2026-01-05 09:00:00 UTC</time>"
    ) in page


@pytest.mark.pages
def test_admin_links_the_result_file_through_the_api_and_rounds_cpu(
    django_user_model: type[User], alice: User
) -> None:
    root = django_user_model.objects.create_superuser("root", password="root-password-1")
    job = finished(alice, chunks=2, run_s=0.123456, gap_s=0.0)
    Job.objects.filter(pk=job.pk).update(result_file="results/x.png")
    client = Client()
    client.force_login(root)
    page = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert f'href="/api/jobs/{job.pk}/result-file/"' in page
    assert "0.247" in page
    assert "0.246912" not in page
