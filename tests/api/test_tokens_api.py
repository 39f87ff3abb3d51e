"""API tokens past their expiry are refused by the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.factories import api_client_for_token as _api
from tokens import services
from tokens.models import ApiToken


@pytest.mark.api
@pytest.mark.django_db
def test_expired_token_is_refused(alice: User) -> None:
    new = services.token_create(user=alice, name="old", expires_in_days=1)
    ApiToken.objects.filter(pk=new.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert _api(new.key).get("/api/jobs/").status_code == 401
