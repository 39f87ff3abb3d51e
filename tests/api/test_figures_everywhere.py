"""One job's speedup, the same on every surface: its page, the history and compare pages,
the API, the command line, the CSV export and the scaling study it belongs to."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from coreboard.cli import main
from coreboard.client import Client as CliClient
from jobs.models import Job
from jobs.services import studies
from tests.factories import finished, ran_on_lanes, study_run

pytestmark = [pytest.mark.api, pytest.mark.django_db]

PARAMS: dict[str, Any] = {"chunks": 4, "ms": 1000, "fail_rate": 0.0}


def _through(api: APIClient) -> Any:
    """httpx clients that the command line makes, answered by Django's test client."""
    real = httpx.Client

    def handle(request: httpx.Request) -> httpx.Response:
        response = api.generic(request.method, request.url.raw_path.decode())
        return httpx.Response(response.status_code, content=response.content)

    def make(**kwargs: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(handle), **kwargs)

    return make


def _no_socket(self: CliClient, job_id: int) -> Iterator[dict[str, Any]]:
    raise OSError("no websocket through the test client: the CLI polls the API")


def _figure(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found is not None, (pattern, text[:2000])
    return float(found.group(1))


@pytest.fixture
def study_and_run(alice: User, dispatched: list[int]) -> tuple[int, Job, Job]:
    """A study of a 2-process job: its parallelism-1 run took 4.4 s, its parallelism-2 run
    2.2 s (speedup 2.00), the source job 2.5 s (speedup 1.76 against the same run)."""
    source = finished(alice, chunks=4, run_s=1.0, gap_s=0.25, params=PARAMS)
    study = studies.study_create(owner=alice, job=source, processes=2)
    ran_on_lanes(study_run(study, 1), run_s=1.0, gap_s=0.1, processes=1)
    studies.study_advance(study_id=study.pk)
    run = ran_on_lanes(study_run(study, 2), run_s=1.0, gap_s=0.1, processes=2)
    source.refresh_from_db()
    return study.pk, source, run


@pytest.mark.parametrize("which", ["run", "source"])
def test_the_same_speedup_on_every_surface(
    alice: User,
    alice_api: APIClient,
    alice_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    study_and_run: tuple[int, Job, Job],
    which: str,
) -> None:
    study_id, source, run = study_and_run
    job = run if which == "run" else source
    expected = 4.4 / 2.2 if which == "run" else 4.4 / 2.5

    api = alice_api.get(f"/api/jobs/{job.pk}/").json()
    assert api["speedup"] == pytest.approx(expected, rel=1e-4)
    assert api["speedup_baseline"] == "measured"
    assert api["baseline_job"] == study_run(job.study or source.scaling_studies.get(), 1).pk
    listed = alice_api.get("/api/jobs/").json()
    items = listed["results"] if isinstance(listed, dict) else listed
    assert {item["id"]: item["speedup"] for item in items}[job.pk] == api["speedup"]
    figures = {"API": api["speedup"]}

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    figures["job page"] = _figure(r'data-figure="speedup">([\d.]+)×', page)
    history = alice_client.get("/history/", {"q": str(job.pk)}).content.decode()
    figures["history"] = _figure(r"<td>([\d.]+)×</td>", history)
    compare = alice_client.get("/history/compare/", {"kind": "burn"}).content.decode()
    row = compare.split(f'<tr data-job-id="{job.pk}">')[1].split("</tr>")[0]
    figures["compare"] = _figure(r'data-figure="speedup">([\d.]+)×', row)

    monkeypatch.setattr(httpx, "Client", _through(alice_api))
    monkeypatch.setattr(CliClient, "_watch_socket", _no_socket)
    cli = CliRunner(env={"COREBOARD_TOKEN": "k"}).invoke(
        main, ["--url", "http://testserver", "watch", str(job.pk)]
    )
    assert cli.exit_code == 0, cli.output
    assert "(against a measured parallelism-1 run" in cli.output
    figures["CLI"] = _figure(r"speedup ([\d.]+)x", cli.output)

    exported = alice_api.get("/api/jobs/export.csv", {"q": str(job.pk)})
    [csv_row] = csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))  # type: ignore[attr-defined]
    assert csv_row["speedup_baseline"] == "measured"
    figures["CSV"] = float(csv_row["speedup"])

    if which == "run":
        study = alice_api.get(f"/api/studies/{study_id}/").json()
        figures["study"] = {point["parallelism"]: point for point in study["runs"]}[2]["speedup"]

    for surface, value in figures.items():
        assert value == pytest.approx(expected, rel=0.05), surface
        # Rounded as each surface rounds: two decimals agree everywhere.
        assert f"{value:.2f}" == f"{expected:.2f}", surface
