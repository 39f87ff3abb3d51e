"""The OpenAPI schema: valid, complete (every route of the API's URLconf), and true."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import URLPattern
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from jobs import kinds, protocol
from jobs.api import openapi
from jobs.api import urls as api_urls
from jobs.kinds.burn import BurnForm
from jobs.kinds.primes import MAX_STOP
from jobs.models import Job
from jobs.selectors import jobs as selectors
from tests.factories import make_job

pytestmark = pytest.mark.api

# `jobs/<int:job_id>/` in the URLconf is `/api/jobs/{job_id}/` in the schema.
CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return schema


def test_spectacular_validates_without_warnings(tmp_path: Path) -> None:
    # --fail-on-warn turns every disagreement drf-spectacular finds between the views and
    # their annotations (an unresolvable body, a missing response) into an error.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert yaml.safe_load(out.read_text())["openapi"].startswith("3.")


def _api_routes() -> dict[str, set[str]]:
    """Every route of jobs/api/urls.py as the schema writes its path, with the HTTP methods
    its view answers."""
    routes = {}
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view = pattern.callback.cls  # type: ignore[attr-defined]
        path = "/api/" + CONVERTER.sub(r"{\1}", str(pattern.pattern))
        routes[path] = {method for method in HTTP_METHODS if hasattr(view, method)}
    return routes


def test_schema_documents_exactly_the_routes_of_the_api() -> None:
    routes = _api_routes()
    assert len(routes) >= 15, "the API's URLconf lost its routes"
    paths = _schema()["paths"]
    documented = {
        path: {method for method in item if method in HTTP_METHODS} for path, item in paths.items()
    }
    assert documented == routes


def test_every_kind_has_its_params_and_creation_body() -> None:
    schemas = _schema()["components"]["schemas"]
    mapping = schemas["JobCreate"]["discriminator"]["mapping"]
    assert set(mapping) == {kind.name for kind in kinds.all_kinds()}
    assert schemas["PrimesJobCreate"]["properties"]["params"] == {
        "$ref": "#/components/schemas/PrimesParams"
    }


def test_params_schema_comes_from_the_form() -> None:
    primes_form = kinds.get("primes").form_class
    primes = openapi.form_json_schema(primes_form)
    # Every parameter has an initial value in the form, so any may be left out.
    assert "required" not in primes
    assert primes["additionalProperties"] is False
    assert primes["properties"]["stop"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_STOP,
        "description": "Exclusive upper bound.",
        "default": primes_form.base_fields["stop"].initial,
    }
    burn = openapi.form_json_schema(BurnForm)
    # Fields with an initial value have it as their default.
    assert burn["properties"]["fail_rate"]["default"] == 0.0
    assert burn["properties"]["fail_rate"]["type"] == "number"
    assert burn["properties"]["ms"]["title"] == "Milliseconds per chunk"
    assert "fail_rate" not in burn.get("required", [])


@pytest.mark.django_db
def test_documented_job_and_chunk_fields_are_exactly_the_real_ones(alice: User) -> None:
    job = make_job(alice, "primes", start=0, stop=100, chunks=2)
    schemas = _schema()["components"]["schemas"]
    assert set(schemas["JobOut"]["properties"]) == set(selectors.job_as_api_dict(job))
    chunk = selectors.job_chunks(job).first()
    assert chunk is not None
    assert set(schemas["ChunkOut"]["properties"]) == set(protocol.chunk_state(chunk))
    assert set(schemas["JobStatusEnum"]["enum"]) == set(Job.Status.values)


@pytest.mark.django_db
def test_kinds_endpoint_lists_kinds_with_their_params_schema(alice_api: APIClient) -> None:
    response = alice_api.get("/api/kinds/")
    assert response.status_code == 200
    by_name = {kind["name"]: kind for kind in response.json()}
    assert set(by_name) == {kind.name for kind in kinds.all_kinds()}
    assert by_name["primes"]["params_schema"] == openapi.form_json_schema(
        kinds.get("primes").form_class
    )


@pytest.mark.django_db
def test_schema_and_docs_are_served() -> None:
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/jobs/" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    # Swagger UI's files come from the sidecar package, not a CDN.
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    # A CDN would be a URL (a random CSRF token in the page may hold the letters "cdn").
    assert "//cdn" not in page.lower()
    assert "https://" not in page


@pytest.mark.django_db
def test_docs_page_has_no_inline_script_or_style() -> None:
    """What the site's CSP (no 'unsafe-inline') would block: the page's scripts all have a
    src on this site, and its initializer is one of them."""
    client = APIClient()
    page = client.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert scripts
    assert all('src="/' in attributes for attributes in scripts), scripts
    assert "<style" not in page
    assert " style=" not in page
    initializer = client.get("/api/docs/?script=")
    assert initializer.status_code == 200
    assert initializer["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in initializer.content.decode()
    # It holds the CSRF token: no other origin may include it.
    assert initializer["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "no-store" in initializer["Cache-Control"]
