"""The new-job page of a kind written as one function: its form comes from the type hints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from jobs.models import Job

pytestmark = [pytest.mark.pages, pytest.mark.django_db]


@pytest.fixture
def scaled_sum() -> Iterator[str]:
    from tests import kinds_function

    with kinds_function.registered():
        yield kinds_function.SCALED_NAME


def test_a_list_parameter_is_a_textarea_of_one_item_per_line(
    alice_client: Client, scaled_sum: str
) -> None:
    page = alice_client.get("/jobs/new/", {"kind": scaled_sum}).content.decode()
    assert '<textarea name="params-values"' in page
    assert 'name="params-factor"' in page
    assert 'type="checkbox" name="params-absolute"' in page
    assert "Adds up the values, each times the factor." in page
    response = alice_client.post(
        "/jobs/new/",
        {"kind": scaled_sum, "params-values": "1.5\r\n-2\r\n\r\n4", "params-factor": "2",
         "params-chunks": "2"},
    )  # fmt: skip
    job = Job.objects.get()
    assert response.status_code == 302, response.content.decode()
    assert job.params == {"values": [1.5, -2.0, 4.0], "factor": 2.0, "absolute": False, "chunks": 2}
    assert [chunk.spec["items"] for chunk in job.chunks.order_by("index")] == [[1.5], [-2.0, 4.0]]
    # Running it again shows the list one item per line.
    again = alice_client.get("/jobs/new/", {"rerun": job.pk}).content.decode()
    assert "1.5\n-2.0\n4.0</textarea>" in again


def test_a_bad_item_is_named_beside_its_field(alice_client: Client, scaled_sum: str) -> None:
    response = alice_client.post(
        "/jobs/new/",
        {"kind": scaled_sum, "params-values": "1\nlots", "params-factor": "1",
         "params-chunks": "1"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "Item 2 (&#x27;lots&#x27;): Enter a number." in response.content.decode()
    assert not Job.objects.exists()
