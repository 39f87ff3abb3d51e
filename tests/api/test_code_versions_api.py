"""A job's code version in the API (issue 23, item 5): what it was submitted with and what
its chunks ran with, documented in the schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from jobs import kinds
from jobs.engine import workers
from tests.factories import complete_next, make_job, start

pytestmark = pytest.mark.api


@pytest.mark.django_db
def test_job_api_shows_the_code_it_was_submitted_and_ran_with(
    alice: User, alice_api: APIClient
) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    complete_next(job)

    body = alice_api.get(f"/api/jobs/{job.pk}/").json()
    listed = alice_api.get("/api/jobs/").json()

    version = kinds.version("burn")
    assert body["code"] == {
        "kind_package": version.package,
        "kind_source": version.source,
        "coreboard_commit": workers.coreboard_commit(),
        # The factory's claimer stamps no code: an unknown one, counted.
        "ran": [{"kind_source": "", "coreboard_commit": "", "chunks": 1}],
    }
    assert listed["results"][0]["code"] == body["code"]


def test_schema_documents_the_code_version() -> None:
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    schemas = schema["components"]["schemas"]
    assert "code" in schemas["JobOut"]["required"]
    code = schemas["JobCodeOut"]["properties"]
    assert set(code) == {"kind_package", "kind_source", "coreboard_commit", "ran"}
