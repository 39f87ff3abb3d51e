"""Every route of the site, with every HTTP method, as each kind of visitor: never a 500.

The routes come from Django's resolver, so a new one is covered with no change here (a
route whose variable has no sample value below fails, saying which). The methods are the
ones people send (GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE), TRACE and ones nobody
documents (PROPFIND, FOO): each must answer 2xx, 3xx or 4xx. Schemathesis does the same
against the real daphne for the API's routes (tests/integration/test_api_fuzz.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from rest_framework.test import APIClient

from tests.factories import (
    api_client_for_token,
    client_for,
    make_job,
    make_schedule_sweep_and_hook,
)
from tokens import services as token_services

pytestmark = [pytest.mark.api, pytest.mark.django_db]

METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "FOO")
# A value for each variable a route may hold; the ids are filled in from real objects.
SAMPLES = {
    "job_id": "{job}",
    "index": "0",
    "study_id": "{missing}",
    "schedule_id": "{schedule}",
    "sweep_id": "{sweep}",
    "hook_id": "{hook}",
    "upload_id": "{missing}",
    "token_id": "{token}",
    # The admin's.
    "object_id": "1",
    "id": "1",
    "content_type_id": "1",
    "app_label": "jobs",
    "url": "no-such-page/",
}
_ROUTE_VARIABLE = re.compile(r"<(?:\w+:)?(\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern.pattern, RoutePattern):
            text = _ROUTE_VARIABLE.sub(lambda m: f"[{m[1]}]", str(pattern.pattern))
        else:
            assert isinstance(pattern.pattern, RegexPattern)
            text = _REGEX_GROUP.sub(lambda m: f"[{m[1]}]", str(pattern.pattern)).strip("^$")
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + text)
        else:
            yield "/" + prefix + text


ROUTES = sorted(set(_routes(get_resolver().url_patterns)))


def _path(route: str, ids: dict[str, int]) -> str:
    def sample(match: re.Match[str]) -> str:
        name = match[1]
        if name not in SAMPLES:
            pytest.fail(f"{route}: no sample value for [{name}]; add one to SAMPLES")
        return SAMPLES[name].format(**ids)

    return re.sub(r"\[(\w+)\]", sample, route)


def test_routes_are_found() -> None:
    assert "/api/jobs/[job_id]/cancel/" in ROUTES
    assert "/admin/[url]" in ROUTES
    assert len(ROUTES) > 60


@pytest.mark.parametrize("route", ROUTES)
def test_no_method_on_any_route_is_a_server_error(
    route: str, alice: User, django_user_model: type[User]
) -> None:
    root = django_user_model.objects.create_superuser("root", password="root-password-1")
    job = make_job(alice, chunks=2, ms=1)
    # The token of the token client is not the one the route may revoke.
    key = token_services.token_create(user=alice, name="client").key
    other = token_services.token_create(user=alice, name="sample")
    ids = {
        "job": job.pk,
        "token": other.token.pk,
        **make_schedule_sweep_and_hook(alice),
        "missing": 2**31 - 1,
    }
    path = _path(route, ids)
    clients: dict[str, Client | APIClient] = {
        "anonymous": Client(),
        "alice's session": client_for(alice),
        "alice's token": api_client_for_token(key),
        "an admin's session": client_for(root),
    }
    answers = []
    for who, client in clients.items():
        for method in METHODS:
            # The client raises what the view raised (the test fails, with its traceback).
            response = client.generic(method, path)
            answers.append(f"{method} {path} as {who}: {response.status_code}")
            assert response.status_code < 500, answers[-1]
            if isinstance(client, Client) and "logout" in path:
                client.force_login(alice if who == "alice's session" else root)


def test_options_names_the_methods_and_points_at_the_schema(alice: User) -> None:
    key = token_services.token_create(user=alice, name="client").key
    response = api_client_for_token(key).options("/api/jobs/")
    assert response.status_code == 200
    body = response.json()
    assert set(body["methods"]) == {"GET", "HEAD", "POST"}
    assert body["schema"] == "http://testserver/api/schema/"
    assert "actions" not in body
