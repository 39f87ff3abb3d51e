from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs import kinds
from jobs.engine import workers
from jobs.models import Job
from tests.factories import claim, make_job, start

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


def test_pages_require_login(client: Client, alice_job: Job) -> None:
    for url in ("/", "/history/", "/jobs/new/", f"/jobs/{alice_job.pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_login_page_logs_in(client: Client, alice: User) -> None:
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302
    assert client.get("/history/").status_code == 200


def test_new_job_form_shows_defaults_and_creates_the_job(alice_client: Client) -> None:
    form = alice_client.get("/jobs/new/", {"kind": "primes"}).content.decode()
    assert 'name="params-stop"' in form
    assert 'value="600000000"' in form
    response = alice_client.post(
        "/jobs/new/",
        {"kind": "primes", "params-start": "0", "params-stop": "1000", "params-chunks": "4"},
    )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.params == {"start": 0, "stop": 1000, "chunks": 4}


def test_new_job_form_shows_field_errors_and_creates_nothing(alice_client: Client) -> None:
    response = alice_client.post(
        "/jobs/new/",
        {"kind": "primes", "params-start": "50", "params-stop": "10", "params-chunks": "0",
         "parallelism": "0"},
    )  # fmt: skip
    assert response.status_code == 400
    page = response.content.decode()
    assert "Must be greater than Start (50)." in page
    assert "Ensure this value is greater than or equal to 1." in page
    assert not Job.objects.exists()


def test_unknown_kind_page_is_404(alice_client: Client) -> None:
    assert alice_client.get("/jobs/new/", {"kind": "nope"}).status_code == 404


def test_detail_shows_progressbar_and_snapshot(alice_client: Client, alice_job: Job) -> None:
    page = alice_client.get(f"/jobs/{alice_job.pk}/").content.decode()
    assert 'role="progressbar"' in page
    assert 'aria-valuenow="0"' in page
    assert 'id="job-snapshot"' in page


def test_pages_give_their_scripts_the_urls(alice_client: Client, alice_job: Job) -> None:
    # The scripts build no URL of their own: sockets, links and APIs come from the page.
    page = alice_client.get(f"/jobs/{alice_job.pk}/").content.decode()
    assert f'data-socket-url="/ws/jobs/{alice_job.pk}/"' in page
    assert f'data-url="/jobs/{alice_job.pk}/summary/"' in page
    overview = alice_client.get("/").content.decode()
    assert 'data-socket-url="/ws/overview/"' in overview
    assert 'data-job-url="/jobs/{id}/"' in overview
    assert '<script type="module" src="/static/jobs/overview.mjs">' in overview


def test_job_page_has_the_output_panel_inspector_and_timeline(
    alice_client: Client, alice_job: Job
) -> None:
    page = alice_client.get(f"/jobs/{alice_job.pk}/").content.decode()
    # The Output panel: a focusable region to scroll, not a live region that reads each line.
    assert (
        '<div id="output" class="output-panel" role="region" aria-labelledby="output-heading" '
        'aria-describedby="output-help" tabindex="0">'
    ) in page
    assert "aria-live" not in page.split('id="output-section"')[1].split("</div>\n</div>")[0]
    assert f'data-url="/api/jobs/{alice_job.pk}/output/"' in page
    # The chunk inspector fetches a chunk's output from a URL template the page gives.
    assert f'data-url-template="/api/jobs/{alice_job.pk}/chunks/{{index}}/output/"' in page
    # ... and a chunk's state, when a person opens one the page does not hold.
    assert f'data-chunk-url-template="/api/jobs/{alice_job.pk}/chunks/{{index}}/"' in page
    assert 'id="inspector-figures"' in page
    # The CPU and memory timeline: two charts, their text alternative and a table.
    assert f'data-url="/api/jobs/{alice_job.pk}/resources/"' in page
    assert page.count('aria-describedby="resources-summary"') == 2
    assert '<caption id="resources-caption">CPU and memory per worker process</caption>' in page


def test_another_users_job_page_is_404(alice_job: Job, mallory_client: Client) -> None:
    client = mallory_client
    assert client.get(f"/jobs/{alice_job.pk}/").status_code == 404
    assert client.post(f"/jobs/{alice_job.pk}/cancel/").status_code == 404
    alice_job.refresh_from_db()
    assert alice_job.status == Job.Status.PENDING


def test_cancel_button_cancels(alice_client: Client, alice_job: Job) -> None:
    response = alice_client.post(f"/jobs/{alice_job.pk}/cancel/")
    assert response.status_code == 302
    alice_job.refresh_from_db()
    assert alice_job.status == Job.Status.CANCELLED
    ended = alice_client.get(f"/jobs/{alice_job.pk}/cancel/").content.decode()
    assert f"Job #{alice_job.pk} has already ended: it is cancelled." in ended
    assert 'id="confirm-cancel"' not in ended


def test_cancel_asks_first_and_changes_nothing_until_confirmed(
    alice_client: Client, alice_job: Job
) -> None:
    page = alice_client.get(f"/jobs/{alice_job.pk}/").content.decode()
    assert f'id="cancel-link" href="/jobs/{alice_job.pk}/cancel/"' in page
    confirm = alice_client.get(f"/jobs/{alice_job.pk}/cancel/")
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert f"<h1>Cancel job #{alice_job.pk}?</h1>" in text
    assert f'<form method="post" action="/jobs/{alice_job.pk}/cancel/"' in text
    assert f'href="/jobs/{alice_job.pk}/">Keep it running</a>' in text
    alice_job.refresh_from_db()
    assert alice_job.status == Job.Status.PENDING


def test_new_job_form_offers_a_chunk_time_limit_within_the_kind_s(
    alice_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(type(kinds.get("primes")), "time_limit_s", 120)
    form = alice_client.get("/jobs/new/", {"kind": "primes"}).content.decode()
    assert 'name="chunk_time_limit_s"' in form
    assert "empty means the kind's limit, 120 s." in form
    refused = alice_client.post(
        "/jobs/new/",
        {"kind": "primes", "params-start": "0", "params-stop": "1000", "params-chunks": "4",
         "chunk_time_limit_s": "121"},
    )  # fmt: skip
    assert refused.status_code == 400
    assert "Must be between 1 and 120 s (the kind&#x27;s time limit)." in refused.content.decode()
    assert not Job.objects.exists()
    alice_client.post(
        "/jobs/new/",
        {"kind": "primes", "params-start": "0", "params-stop": "1000", "params-chunks": "4",
         "chunk_time_limit_s": "90"},
    )  # fmt: skip
    job = Job.objects.get()
    assert job.chunk_time_limit_s == 90
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert '<dd id="time-limit-value">90 s</dd>' in page


def test_job_page_shows_the_kind_s_time_limit_when_the_job_asked_for_none(
    alice_client: Client, alice_job: Job, settings: Any
) -> None:
    settings.COREBOARD_CHUNK_TIME_LIMIT_S = 600
    page = alice_client.get(f"/jobs/{alice_job.pk}/").content.decode()
    assert '<dd id="time-limit-value">600 s (the kind&#x27;s)</dd>' in page


def test_a_waiting_job_s_page_links_the_owner_s_jobs_that_hold_the_processes(
    alice: User, bob: User, alice_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = {"w@node": workers.LiveWorker(concurrency=2, kinds=frozenset({"burn"}))}
    monkeypatch.setattr(workers, "live_workers", lambda conn=None: live)
    monkeypatch.setattr(workers, "workers_seen", lambda conn=None: {})
    mine, theirs = make_job(alice, chunks=2), make_job(bob, chunks=2)
    for job, process in ((mine, "w@node|41|boot"), (theirs, "w@node|42|boot")):
        start(job)
        claim(job, process=process)
    waiting = make_job(alice, chunks=1)
    page = alice_client.get(f"/jobs/{waiting.pk}/").content.decode()
    assert (
        f"Waiting for a free worker process: all 2 are busy with job #{mine.pk} (yours) "
        "and 1 job of another person"
    ) in page
    assert f'Your jobs that hold them: <a href="/jobs/{mine.pk}/">#{mine.pk}</a></p>' in page
    assert f"#{theirs.pk}" not in page.split('id="job-snapshot"')[0]


def test_overview_names_kinds_by_their_labels(alice_client: Client) -> None:
    response = alice_client.get("/")
    assert response.context["kind_labels"]["burn"] == "Burn CPU"
    assert '<script id="kind-labels" type="application/json">' in response.content.decode()


def test_one_nav_item_is_current_on_each_page(alice_client: Client) -> None:
    for path, current in [
        ("/", "Overview"),
        ("/history/", "History"),
        ("/jobs/new/", "New job"),
        ("/tokens/", "API tokens"),
        ("/uploads/", "Uploads"),
    ]:
        page = alice_client.get(path).content.decode()
        nav = page.split('<nav aria-label="Main">')[1].split("</nav>")[0]
        assert re.findall(r'aria-current="page">([^<]+)<', nav) == [current], path
