"""Per-person quotas (jobs.services.quotas) in the services."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from jobs import services
from tests.factories import BURN

# Jobs are made here and never dispatched.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("dispatched")]


@pytest.mark.services
def test_quotas_are_per_person(alice: User, bob: User) -> None:
    for _ in range(10):
        services.job_create(owner=alice, **BURN)
    services.job_create(owner=bob, **BURN)
