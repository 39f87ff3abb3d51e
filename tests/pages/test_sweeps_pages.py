"""Sweep pages: the new-job form in sweep mode, the sweep's page, and history's one row."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from jobs.models import Job, Sweep
from jobs.services import sweeps
from tests.factories import ran_on_lanes

pytestmark = [pytest.mark.pages, pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]

FORM_3X3 = {
    "kind": "burn",
    "params-chunks": "1, 2, 3",
    "params-ms": "1,2,3",
    "params-fail_rate": "0",
}


def test_the_form_in_sweep_mode_starts_a_3x3_sweep(alice_client: Client) -> None:
    new = alice_client.get(reverse("jobs:new"), {"kind": "burn"})
    assert reverse("jobs:sweep-new") in new.content.decode()
    answer = alice_client.post(reverse("jobs:sweep-new"), FORM_3X3)
    sweep = Sweep.objects.get()
    assert answer.status_code == 302
    assert answer["Location"] == reverse("jobs:sweep", args=[sweep.pk])
    assert sweep.runs.count() == 9
    assert sweep.grid == {"chunks": [1, 2, 3], "ms": [1, 2, 3]}
    assert sweep.base_params["fail_rate"] == 0.0


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({**FORM_3X3, "params-ms": "1, x"}, "Enter a whole number."),
        ({**FORM_3X3, "params-chunks": "1", "params-ms": "1"}, "several values"),
        ({**FORM_3X3, "params-ms": "1, -4"}, "Run 1 (chunks = 1, ms = -4)"),
    ],
)
def test_a_refused_sweep_says_why_beside_the_field_and_starts_nothing(
    alice_client: Client, form: dict[str, str], words: str
) -> None:
    answer = alice_client.post(reverse("jobs:sweep-new"), form)
    assert answer.status_code == 400
    assert words in answer.content.decode()
    assert not Job.objects.exists()


def test_a_sweep_over_quota_starts_nothing(alice_client: Client, settings: Any) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 4
    answer = alice_client.post(reverse("jobs:sweep-new"), FORM_3X3)
    assert answer.status_code == 400
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in answer.content.decode()
    assert not Sweep.objects.exists()


def test_history_shows_a_sweep_as_one_row_with_its_jobs_count_and_status(
    alice: User, alice_client: Client
) -> None:
    sweep = sweeps.sweep_create(
        owner=alice, kind="burn", grid={"chunks": [1, 2, 3], "ms": [1, 2, 3]}
    )
    ran_on_lanes(sweep.runs.get(sweep_index=8), run_s=1, gap_s=0)
    page = alice_client.get(reverse("jobs:list"))
    rows = page.context["rows"]
    assert len(rows) == 1
    (row,) = rows
    assert (row.sweep_jobs, row.sweep_done, row.sweep_status) == (9, 1, "running")
    assert row.sweep_swept == "chunks, ms"
    assert f'href="{reverse("jobs:sweep", args=[sweep.pk])}"' in page.content.decode()
    its_jobs = alice_client.get(reverse("jobs:list"), {"sweep": sweep.pk})
    assert len(its_jobs.context["rows"]) == 9
    # Matched one by one: the succeeded run is listed alone.
    succeeded = alice_client.get(reverse("jobs:list"), {"status": "succeeded"})
    assert [row.job.sweep_index for row in succeeded.context["rows"]] == [8]


def test_the_sweep_page_lists_every_run_and_is_private(
    alice: User, alice_client: Client, mallory_client: Client, staff_client: Client
) -> None:
    sweep = sweeps.sweep_create(
        owner=alice, kind="burn", grid={"chunks": [1, 2, 3], "ms": [1, 2, 3]}
    )
    page = alice_client.get(reverse("jobs:sweep", args=[sweep.pk]))
    assert page.status_code == 200
    assert len(page.context["table_rows"]) == 9
    assert page.context["param_columns"][:2] == ["chunks", "ms"]
    assert 'id="sweep-chart"' in page.content.decode()
    exported = alice_client.get(reverse("jobs:sweep-export-csv", args=[sweep.pk]))
    assert exported.content.decode().count("\n") == 10
    for url in (
        reverse("jobs:sweep", args=[sweep.pk]),
        reverse("jobs:sweep-export-csv", args=[sweep.pk]),
    ):
        assert mallory_client.get(url).status_code == 404
    assert mallory_client.post(reverse("jobs:sweep-cancel", args=[sweep.pk])).status_code == 404
    assert staff_client.get(reverse("jobs:sweep", args=[sweep.pk])).status_code == 200
    run = sweep.runs.get(sweep_index=4)
    job_page = alice_client.get(reverse("jobs:detail", args=[run.pk])).content.decode()
    assert f'Run 4 of <a href="{reverse("jobs:sweep", args=[sweep.pk])}">' in job_page
    cancelled = alice_client.post(reverse("jobs:sweep-cancel", args=[sweep.pk]))
    assert cancelled.status_code == 302
    assert set(sweep.runs.values_list("status", flat=True)) == {"cancelled"}
