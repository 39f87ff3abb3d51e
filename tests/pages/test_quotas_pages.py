"""Per-person quotas (jobs.services.quotas) as the pages show them."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from jobs import services
from tests.factories import BURN

# Jobs are made here and never dispatched.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]


@pytest.mark.pages
def test_the_new_job_page_shows_the_quota(alice: User, alice_client: Any) -> None:
    for _ in range(10):
        services.job_create(owner=alice, **BURN)
    page = alice_client.post(
        "/jobs/new/",
        {"kind": "burn", "params-chunks": "1", "params-ms": "1", "params-fail_rate": "0"},
    )
    assert page.status_code == 400
    assert "COREBOARD_QUOTA_ACTIVE_JOBS" in page.content.decode()
