"""A kind written as one function through the JSON API: its schema and its checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

pytestmark = [pytest.mark.api, pytest.mark.django_db]


@pytest.fixture
def scaled_sum() -> Iterator[str]:
    from tests import kinds_function

    with kinds_function.registered():
        yield kinds_function.SCALED_NAME


def test_a_list_parameter_is_a_json_array_checked_item_by_item(
    alice_api: APIClient, scaled_sum: str
) -> None:
    listed = {kind["name"]: kind for kind in alice_api.get("/api/kinds/").json()}
    assert listed[scaled_sum]["params_schema"]["properties"]["values"] == {
        "type": "array",
        "items": {"type": "number", "minimum": -1000, "maximum": 1000},
        "maxItems": 100,
        "title": "Values",
    }
    created = alice_api.post(
        "/api/jobs/",
        {"kind": scaled_sum, "params": {"values": [1, 2.5, -3], "factor": 2, "chunks": 3}},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["params"] == {
        "values": [1.0, 2.5, -3.0], "factor": 2.0, "absolute": False, "chunks": 3,
    }  # fmt: skip
    refused = alice_api.post(
        "/api/jobs/",
        {"kind": scaled_sum, "params": {"values": [1, "2", 5000], "chunks": 4}},
        format="json",
    )
    assert refused.status_code == 400
    errors = refused.json()["params"]
    assert errors["values"] == [
        "Item 2 ('2'): Must be a JSON number, not a string.",
        "Item 3 (5000): Ensure this value is less than or equal to 1000.",
    ]


def test_the_new_job_pages_live_count_reads_a_list_typed_one_per_line(
    alice_api: APIClient, scaled_sum: str
) -> None:
    params = {"values": "1\n2.5\n\n-3", "chunks": "2"}
    body = {"kind": scaled_sum, "params": params}
    counted = alice_api.post("/api/jobs/preview/?form=1", body, format="json")
    assert counted.status_code == 200, counted.json()
    assert counted.json()["chunks"] == 2
    params["values"] = "1\nmany"
    refused = alice_api.post("/api/jobs/preview/?form=1", body, format="json")
    assert refused.status_code == 400
    assert refused.json()["params"]["values"] == ["Item 2 ('many'): Enter a number."]
