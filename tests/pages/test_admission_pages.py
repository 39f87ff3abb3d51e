"""Admission through the pages: the form, the retry button, the prefilled rerun form and the
study button are refused at the quotas (also 20 at once) and throttled with 429 +
Retry-After from the same budget as the API's, saying so on the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from jobs import kinds, services
from jobs.models import Job, ScalingStudy, Upload
from tests.factories import (
    BURN,
    active_jobs,
    api_client_for,
    client_for,
    in_parallel,
    make_failed_job,
    succeeded_job,
    workers_alive,
)

pytestmark = [pytest.mark.pages, pytest.mark.usefixtures("dispatched")]

BURN_FORM = {"kind": "burn", "params-chunks": "2", "params-ms": "1", "params-fail_rate": "0"}


def assert_throttled_page(response: Any, variable: str) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    page = response.content.decode()
    assert "Request was throttled" in page
    assert variable in page
    assert "Traceback" not in page


# --- quotas under concurrency, by path -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_20_parallel_form_posts_never_pass_the_quota(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-create"] = "1000/minute"
    # Of a kind no worker has: the suite's shared worker, alive once an integration test
    # started it, would otherwise run (and end) these committed jobs while the test counts.
    with kinds.temporary():
        from tests import kinds_probe

        kinds.register(kinds_probe.Probe)
        for _ in range(7):
            services.job_create(owner=alice, kind=kinds_probe.NAME, params={"chunks": 1, "ms": 1})
        form = {"kind": kinds_probe.NAME, "params-chunks": "1", "params-ms": "1"}
        responses = in_parallel(lambda _: client_for(alice).post("/jobs/new/", form))
    assert sorted(r.status_code for r in responses) == [302] * 3 + [400] * 17
    refused = next(r for r in responses if r.status_code == 400)
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in refused.content.decode()
    assert active_jobs(alice) == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_page_retries_never_pass_the_quota(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-action"] = "1000/minute"
    failed = [make_failed_job(alice) for _ in range(20)]
    for _ in range(8):
        services.job_create(owner=alice, **BURN)
    in_parallel(lambda i: client_for(alice).post(reverse("jobs:retry", args=[failed[i].pk])))
    assert active_jobs(alice) == 10
    assert Job.objects.filter(pk__in=[j.pk for j in failed], status="running").count() == 2


@pytest.mark.django_db(transaction=True)
def test_20_parallel_rerun_forms_never_pass_the_quota(
    alice: User, rates: dict[str, str | None]
) -> None:
    rates["job-action"] = "1000/minute"
    source = succeeded_job(alice)
    for _ in range(5):
        services.job_create(owner=alice, **BURN)
    form = BURN_FORM | {"rerun": str(source.pk)}
    responses = in_parallel(lambda _: client_for(alice).post("/jobs/new/", form))
    assert sorted(r.status_code for r in responses) == [302] * 5 + [400] * 15
    assert Job.objects.filter(rerun_of=source).count() == 5
    assert active_jobs(alice) == 10


@pytest.mark.django_db(transaction=True)
def test_20_parallel_study_buttons_never_pass_the_quota(
    alice: User, rates: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rates["job-create"] = "1000/minute"
    workers_alive(monkeypatch, 2)
    source = succeeded_job(alice)
    for _ in range(6):
        services.job_create(owner=alice, **BURN)
    in_parallel(lambda _: client_for(alice).post(reverse("jobs:study-create", args=[source.pk])))
    assert ScalingStudy.objects.count() == 4
    assert active_jobs(alice) == 10


# --- rates: the pages share the API's budget ----------------------------------------------------


@pytest.mark.django_db
def test_the_form_is_throttled_after_the_apis_creations(
    alice: User, alice_client: Client, rates: dict[str, str | None]
) -> None:
    rates["job-create"] = "2/minute"
    api = api_client_for(alice)
    assert [api.post("/api/jobs/", BURN, format="json").status_code for _ in range(2)] == [201] * 2
    response = alice_client.post("/jobs/new/", BURN_FORM)
    assert_throttled_page(response, "COREBOARD_RATE_JOB_CREATE")
    # The form is shown again, with what was typed.
    assert 'name="params-ms"' in response.content.decode()
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_the_api_is_throttled_after_the_forms_creations(
    alice: User, alice_client: Client, rates: dict[str, str | None]
) -> None:
    rates["job-create"] = "2/minute"
    assert [alice_client.post("/jobs/new/", BURN_FORM).status_code for _ in range(2)] == [302] * 2
    response = api_client_for(alice).post("/api/jobs/", BURN, format="json")
    assert response.status_code == 429
    assert "COREBOARD_RATE_JOB_CREATE" in response.json()["detail"]
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_page_retries_are_throttled(
    alice: User, alice_client: Client, rates: dict[str, str | None]
) -> None:
    rates["job-action"] = "2/minute"
    failed = [make_failed_job(alice) for _ in range(3)]
    for job in failed[:2]:
        assert alice_client.post(reverse("jobs:retry", args=[job.pk])).status_code == 302
    response = alice_client.post(reverse("jobs:retry", args=[failed[2].pk]))
    assert_throttled_page(response, "COREBOARD_RATE_JOB_ACTION")
    failed[2].refresh_from_db()
    assert failed[2].status == Job.Status.FAILED


@pytest.mark.django_db
def test_rerun_forms_are_throttled_with_the_apis_reruns(
    alice: User, alice_client: Client, rates: dict[str, str | None]
) -> None:
    rates["job-action"] = "2/minute"
    source = succeeded_job(alice)
    api = api_client_for(alice)
    assert [api.post(f"/api/jobs/{source.pk}/rerun/").status_code for _ in range(2)] == [201] * 2
    response = alice_client.post("/jobs/new/", BURN_FORM | {"rerun": str(source.pk)})
    assert_throttled_page(response, "COREBOARD_RATE_JOB_ACTION")
    assert Job.objects.filter(rerun_of=source).count() == 2


@pytest.mark.django_db
def test_a_page_study_is_refused_while_the_api_answers_429(
    alice: User, alice_client: Client, rates: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rates["job-create"] = "2/minute"
    workers_alive(monkeypatch, 2)
    source = succeeded_job(alice)
    api = api_client_for(alice)
    assert [api.post("/api/jobs/", BURN, format="json").status_code for _ in range(3)] == [
        201,
        201,
        429,
    ]
    response = alice_client.post(reverse("jobs:study-create", args=[source.pk]))
    assert_throttled_page(response, "COREBOARD_RATE_JOB_CREATE")
    assert not ScalingStudy.objects.exists()


@pytest.mark.django_db
def test_form_uploads_are_refused_while_api_uploads_answer_429(
    alice: User, alice_client: Client, rates: dict[str, str | None]
) -> None:
    rates["upload"] = "2/minute"
    api = api_client_for(alice)
    codes = [api.post("/api/uploads/", {"file": _text(f"{i}.txt")}).status_code for i in range(3)]
    assert codes == [201, 201, 429]
    response = alice_client.post(
        "/jobs/new/",
        {"kind": "wordcount", "params-upload": _text("form.txt"), "params-chunks": "2",
         "params-top": "5"},
    )  # fmt: skip
    assert_throttled_page(response, "COREBOARD_RATE_UPLOAD")
    assert Upload.objects.count() == 2
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_form_shows_the_per_job_quota_with_the_estimate(
    alice: User, alice_client: Client
) -> None:
    response = alice_client.post(
        "/jobs/new/", BURN_FORM | {"params-chunks": "20", "params-ms": "300000"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "about 6,000 CPU seconds (1.7 CPU-hours)" in page
    assert "COREBOARD_QUOTA_JOB_S" in page
    assert not Job.objects.exists()


def _text(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"one two three", content_type="text/plain")


# --- the probe's numbers, at the default settings -------------------------------------------------


@pytest.mark.django_db
def test_20_form_posts_in_a_row_create_10_jobs_at_the_default_rate(
    alice: User, alice_client: Client
) -> None:
    """The probe's form created 20 jobs in 4.6 s; COREBOARD_RATE_JOB_CREATE is 10/minute."""
    codes = [alice_client.post("/jobs/new/", BURN_FORM).status_code for _ in range(20)]
    assert codes == [302] * 10 + [429] * 10
    assert Job.objects.count() == 10


@pytest.mark.django_db
def test_35_page_retries_in_a_row_stop_at_the_quota_and_then_the_rate(
    alice: User, alice_client: Client
) -> None:
    """The probe's page retry accepted 35 in a row, past the quota of 10 active jobs."""
    failed = [make_failed_job(alice) for _ in range(35)]
    retry = [reverse("jobs:retry", args=[job.pk]) for job in failed]
    codes = [alice_client.post(url).status_code for url in retry[:10]]
    eleventh = alice_client.post(retry[10], follow=True)
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in eleventh.content.decode()
    codes += [alice_client.post(url).status_code for url in retry[11:]]
    # COREBOARD_RATE_JOB_ACTION is 30/minute: every attempt spends, the refused ones too.
    assert codes == [302] * 29 + [429] * 5
    assert active_jobs(alice) == 10
