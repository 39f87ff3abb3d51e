"""Schemathesis, a client nobody here wrote, against the real daphne and the served schema.

Every operation of /api/schema/ gets property-based requests with alice's token: no
response may be a 500, every status code, content type and body must match the schema
(responses allow no undocumented fields), and any request about one of bob's jobs must be a
404, as must every list alice gets be free of bob's jobs. Job ids in paths are drawn from
both users' real jobs (and a missing one), so the runs reach real 200s, 409s and 404s.

The run is bounded: COREBOARD_FUZZ_EXAMPLES examples per operation (default 12), derandomized
so that CI sees the same cases every time; about 20 s on 2 cores.

That the checks can fail was shown by hand, once (not in CI), by breaking the server:
- `protocol.job_state` with an extra `"secret": 1` field: `response_schema_conformance` failed on
  every operation returning a job ("Additional properties are not allowed ('secret' ...)");
- `JobDetail.get` raising ZeroDivisionError: `not_a_server_error` failed ("Server error");
- `job_get_for_user` returning any user's job: `no_cross_user_access` failed ("bob's job
  … answered 200"). tests/api/test_api_fuzz_checks.py keeps the first two honest without a
  server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err

from jobs import services
from jobs.models import Job
from tests.factories import make_job
from tests.schema_checks import CHECKS
from tokens import services as token_services

MAX_EXAMPLES = int(os.environ.get("COREBOARD_FUZZ_EXAMPLES", "12"))


def no_cross_user_access(forbidden: set[int]) -> Callable[..., None]:
    def check(ctx: Any, response: Any, case: Any) -> None:
        job_id = (case.path_parameters or {}).get("job_id")
        if job_id in forbidden and response.status_code != 404:
            raise AssertionError(f"bob's job {job_id} answered {response.status_code}")
        if case.path == "/api/jobs/" and response.status_code == 200:
            body = response.json()
            results = body.get("results") if isinstance(body, dict) else None
            leaked = {job.get("id") for job in results or [] if isinstance(job, dict)}
            if leaked & forbidden:
                raise AssertionError(f"bob's jobs {leaked & forbidden} listed for alice")

    check.__name__ = "no_cross_user_access"
    return check


def _fuzz(
    operation: Any, *, base_url: str, headers: dict[str, str], job_ids: list[int], extra: Any
) -> None:
    @given(case=operation.as_strategy(), job_id=st.sampled_from(job_ids))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, job_id: int) -> None:
        if "job_id" in (case.path_parameters or {}):
            case.path_parameters["job_id"] = job_id
        case.call_and_validate(
            base_url=base_url, headers=headers, checks=CHECKS, additional_checks=[extra]
        )

    run()


def _jobs(owner: User) -> list[int]:
    """A pending, a cancelled and a failed job (no worker needed for any of them)."""
    pending = make_job(owner, chunks=2, ms=10)
    cancelled = make_job(owner, chunks=2, ms=10)
    services.job_cancel(job=cancelled)
    failed = make_job(owner, chunks=2, ms=10)
    Job.objects.filter(pk=failed.pk).update(status=Job.Status.FAILED, failed_chunks=1)
    failed.chunks.filter(index=0).update(status="failed", error="boom")
    return [pending.pk, cancelled.pk, failed.pk]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_api_conforms_to_its_schema_and_keeps_users_apart(
    daphne_server: str, alice: User, bob: User
) -> None:
    alice_jobs, bob_jobs = _jobs(alice), _jobs(bob)
    key = token_services.token_create(user=alice, name="fuzz").key
    document = httpx.get(f"{daphne_server}/api/schema/?format=json").json()
    schema = schemathesis.openapi.from_dict(document)
    failures: dict[str, str] = {}
    operations = 0
    try:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()
            operation = result.ok()
            operations += 1
            try:
                _fuzz(
                    operation,
                    base_url=daphne_server,
                    headers={"Authorization": f"Token {key}"},
                    job_ids=[*alice_jobs, *bob_jobs, 2**31],
                    extra=no_cross_user_access(set(bob_jobs)),
                )
            except (Exception, BaseExceptionGroup) as failure:  # reported all together below
                failures[operation.label] = str(failure)[:2000]
    finally:
        # Jobs the fuzzer created (or ran again) must not keep the suite's workers busy.
        for job in Job.objects.filter(status__in=Job.ACTIVE_STATUSES):
            services.job_cancel(job=job)
    # Every operation the schema documents (docs/api-reference.md lists them) was fuzzed.
    methods = {"get", "put", "post", "delete", "patch"}
    documented = sum(
        1 for item in document["paths"].values() for method in item if method in methods
    )
    assert operations == documented >= 13
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    # Bob's jobs came through untouched.
    assert Job.objects.filter(pk__in=bob_jobs).count() == 3


# Methods people and tools send beyond what the schema lists: HEAD and OPTIONS (answered on
# every route), TRACE, WebDAV's PROPFIND and a made-up one.
UNLISTED = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "FOO")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_methods_the_schema_does_not_list_answer_405_never_500(
    daphne_server: str, alice: User
) -> None:
    """Every path of /api/schema/, through the real daphne, with each method its schema
    does not list: 405 with an Allow header (HEAD where GET is listed, and OPTIONS: 200 or
    the GET's 404), never a 500. The documented ones are fuzzed above."""
    job_id = _jobs(alice)[0]
    key = token_services.token_create(user=alice, name="methods").key
    document = httpx.get(f"{daphne_server}/api/schema/?format=json").json()
    answers: list[str] = []
    wrong: list[str] = []
    with httpx.Client(base_url=daphne_server, headers={"Authorization": f"Token {key}"}) as http:
        for template, item in document["paths"].items():
            path = template.replace("{job_id}", str(job_id)).replace("{index}", "0")
            path = re.sub(r"\{\w+\}", "1", path)
            listed = {method.upper() for method in item if method.upper() in UNLISTED}
            for method in UNLISTED:
                if method in listed:
                    continue
                response = http.request(method, path)
                answer = f"{method} {path}: {response.status_code}"
                answers.append(answer)
                if method == "OPTIONS" or (method == "HEAD" and "GET" in listed):
                    expected = {200, 404}
                else:
                    expected = {405}
                if response.status_code not in expected:
                    wrong.append(answer)
                elif response.status_code == 405:
                    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
                    if not listed <= allowed:
                        wrong.append(f"{answer}, Allow: {response.headers.get('Allow')}")
        # A HEAD of the CSV export takes one of the person's export slots (2) and must give
        # it back, its body never read.
        for _ in range(3):
            assert http.head("/api/jobs/export.csv").status_code == 200
        assert http.get("/api/jobs/export.csv").status_code == 200
    assert len(answers) >= 7 * len(document["paths"])
    assert not wrong, "\n".join(wrong)
