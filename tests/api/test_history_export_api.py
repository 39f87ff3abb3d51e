from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import HttpResponseBase, StreamingHttpResponse
from django.test import override_settings
from rest_framework.test import APIClient

from tests.factories import make_job

pytestmark = [pytest.mark.api, pytest.mark.django_db]


def csv_ids(response: HttpResponseBase) -> list[str]:
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    return [row["id"] for row in csv.DictReader(io.StringIO(response.getvalue().decode()))]


def test_export_holds_my_jobs_with_the_history_filters(
    alice_api: APIClient, alice: User, mallory: User
) -> None:
    primes = make_job(alice, "primes", start=0, stop=100, chunks=1)
    burn = make_job(alice, chunks=1)
    make_job(mallory, chunks=1)
    assert csv_ids(alice_api.get("/api/jobs/export.csv")) == [str(burn.pk), str(primes.pk)]
    assert csv_ids(alice_api.get("/api/jobs/export.csv", {"q": "Stop 100"})) == [str(primes.pk)]
    assert csv_ids(alice_api.get("/api/jobs/export.csv", {"kind": "burn"})) == [str(burn.pk)]


def test_export_refuses_invalid_filters_by_field(alice_api: APIClient) -> None:
    response = alice_api.get("/api/jobs/export.csv", {"status": "bogus"})
    assert response.status_code == 400
    assert list(response.json()) == ["status"]


@override_settings(COREBOARD_EXPORTS_PER_PERSON=1)
def test_one_export_more_than_the_setting_allows_is_a_429_naming_it(
    alice_api: APIClient, alice: User
) -> None:
    make_job(alice, chunks=1)
    streaming = alice_api.get("/api/jobs/export.csv")
    assert streaming.status_code == 200
    refused = alice_api.get("/api/jobs/export.csv")
    assert refused.status_code == 429
    assert refused.json() == {
        "exports": [
            "You have 1 history export streaming; at most 1 may stream at once per person "
            "(COREBOARD_EXPORTS_PER_PERSON). Try again when one has finished."
        ]
    }
    # Closed before a byte was read, as when its client goes away (without the test
    # client's request_finished, which would close the test's transaction).
    request_finished.disconnect(close_old_connections)
    try:
        streaming.close()
    finally:
        request_finished.connect(close_old_connections)
    assert len(csv_ids(alice_api.get("/api/jobs/export.csv"))) == 1
