"""How jobs read to people on the pages: parameters, results, speedup explained; error
pages; CSP."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django import forms
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.test import Client

from jobs import services
from jobs.kinds.base import JobKind, display_value
from jobs.models import Job
from jobs.views.presentation import duration_text
from tests.factories import SMALL_MANDELBROT, T0, finished, make_job

pytestmark = pytest.mark.django_db


# --- parameters and results ------------------------------------------------------------------


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
    assert "<td>Burn CPU<br>" in page
    found = alice_client.get("/history/", {"q": "Milliseconds per chunk 7771"}).content.decode()
    assert f'data-job-id="{wanted.pk}"' in found
    assert found.count("<tr data-job-id=") == 1
    by_label = alice_client.get("/history/", {"q": "burn cpu"}).content.decode()
    assert by_label.count("<tr data-job-id=") == 2


@pytest.mark.pages
def test_history_kind_filter_shows_labels(alice_client: Client) -> None:
    page = alice_client.get("/history/").content.decode()
    assert '<option value="primes">Count primes</option>' in page


# --- speedup explained -----------------------------------------------------------------------


@pytest.mark.pages
def test_job_page_explains_a_low_speedup(alice: User, alice_client: Client) -> None:
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "About this speedup" in page
    assert "2 ms of work each on average" in page
    # One piece of advice, the costliest cause's.
    assert page.count('id="speedup-advice"') == 1
    assert "Use fewer, bigger chunks" in page
    assert "more, smaller chunks" not in page
    fragment = alice_client.get(f"/jobs/{job.pk}/summary/").content.decode()
    assert "2 ms of work each on average" in fragment
    assert "Loop iterations" in fragment


@pytest.mark.pages
@pytest.mark.parametrize("status", [Job.Status.FAILED, Job.Status.CANCELLED])
def test_no_speedup_box_on_a_failed_or_cancelled_job(
    alice: User, alice_client: Client, status: str
) -> None:
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    Job.objects.filter(pk=job.pk).update(status=status, error="boom")
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "About this speedup" not in page
    assert "speedup-notes" not in page


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


@pytest.mark.pages
def test_a_result_without_a_display_is_a_table_of_its_fields_with_the_json_kept(
    alice: User, alice_client: Client
) -> None:
    job = services.job_create(owner=alice, kind="mandelbrot", params=SMALL_MANDELBROT)
    result = {
        "pixels": 3072,
        "stats": {"inside": 512},
        "rows": [{"y": 0, "n": 4}, {"y": 1, "n": 5}],
    }
    Job.objects.filter(pk=job.pk).update(status="succeeded", result=result, finished_at=T0)
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    # In the stored (jsonb) order of keys.
    assert "<dt>stats.inside</dt><dd>512</dd><dt>pixels</dt><dd>3072</dd>" in page
    assert '<caption id="result-table-caption-1">rows</caption>' in page
    assert '<th scope="col">n</th><th scope="col">y</th>' in page
    assert "<tr><td>4</td><td>0</td></tr><tr><td>5</td><td>1</td></tr>" in page
    assert "<summary>The result as JSON</summary>" in page


# --- durations -------------------------------------------------------------------------------


@pytest.mark.pages
@pytest.mark.django_db(databases=[])
def test_durations_follow_the_rules_the_script_shares() -> None:
    table = json.loads((Path(__file__).parents[1] / "duration_cases.json").read_text())
    for seconds, text in table["cases"]:
        assert duration_text(seconds) == text, seconds
    # No minute ever shows 60 seconds, nor an hour 60 minutes.
    texts = (duration_text(tenths / 10) for tenths in range(80_000))
    assert not [text for text in texts if re.search(r"(min|h) 60 (s|min)$", text)]


@pytest.mark.pages
@pytest.mark.django_db(databases=[])
def test_parameters_read_as_people_write_them() -> None:
    class Form(forms.Form):
        mode = forms.ChoiceField(
            label="Mode", choices=[("ok", "normal"), ("Rare", [("x9", "extreme")])]
        )
        samples = forms.IntegerField(label="Samples")
        year = forms.IntegerField(label="Year")
        rate = forms.FloatField(label="Rate")

    kind = SimpleNamespace(form_class=Form)
    params = {"mode": "ok", "samples": 40_000_000, "year": 2026, "rate": 0.25}
    assert JobKind.params_display(kind, params) == [  # type: ignore[arg-type]
        ("Mode", "normal"),
        ("Samples", "40,000,000"),
        ("Year", "2026"),
        ("Rate", "0.25"),
    ]
    assert JobKind.params_display(kind, {"mode": "x9"}) == [("Mode", "extreme")]  # type: ignore[arg-type]
    # A value no longer among the choices still shows, as stored.
    assert JobKind.params_display(kind, {"mode": "gone"}) == [("Mode", "gone")]  # type: ignore[arg-type]
    assert display_value(1e7) == "10,000,000"
    assert display_value(12_345.678) == "12,345.68"
