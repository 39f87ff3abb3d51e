"""The fuzzing harness's checks (tests/integration/test_api_fuzz.py) fail on the faults they
are there to catch, without a server."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import schemathesis

from tests.schema_checks import CHECKS


def _response(status: int, body: bytes) -> httpx.Response:
    response = httpx.Response(
        status,
        content=body,
        headers={"Content-Type": "application/json"},
        request=httpx.Request("GET", "http://testserver/api/jobs/1/"),
    )
    response.read()
    response.elapsed = timedelta(milliseconds=1)
    return response


@pytest.mark.api
def test_checks_catch_a_500_and_an_undocumented_field() -> None:
    """The harness's checks fail on the two faults the issue names, without a server."""
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    operation = schemathesis.openapi.from_dict(document)["/api/jobs/{job_id}/"]["GET"]
    case = operation.Case(path_parameters={"job_id": 1})
    job = (
        b'{"id": 1, "kind": "burn", "params": {}, "status": "pending", "progress": 0.0,'
        b' "total_chunks": 1, "done_chunks": 0, "failed_chunks": 0, "parallelism": 1,'
        b' "chunk_time_limit_s": null, "priority": "normal",'
        b' "result": null, "error": "", "created_at": "2026-01-01T00:00:00Z",'
        b' "started_at": null, "finished_at": null, "wall_seconds": null, "cpu_seconds": 0.0,'
        b' "speedup": null, "speedup_baseline": null, "baseline_seconds": null,'
        b' "baseline_job": null, "parallelism_achieved": null, "processes_used": null,'
        b' "efficiency": null, "version": 0, "result_file": null,'
        b' "code": {"kind_package": "", "kind_source": "", "coreboard_commit": "",'
        b' "ran": []},'
        b' "waiting": null, "broker_unavailable": null}'
    )
    case.validate_response(_response(200, job), checks=CHECKS)  # the real shape passes
    with pytest.raises(BaseExceptionGroup, match="Additional properties"):
        case.validate_response(_response(200, job[:-1] + b', "secret": 1}'), checks=CHECKS)
    with pytest.raises(BaseExceptionGroup, match="Server error"):
        case.validate_response(_response(500, b'{"detail": "boom"}'), checks=CHECKS)
