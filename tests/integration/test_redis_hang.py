"""A hung Redis (SIGSTOP): requests answer quickly and say so, submits are saved and start
once it answers, and running chunks keep computing (issue 19, item 6).

The worker, daphne and the Redis they share are the test's own (a private Redis on a free
port), so stopping it leaves the suite's Redis alone.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import Job
from launcher import stack
from tests.processes import ServerProcess, start_celery_worker, start_daphne
from tests.services_plugin import TEST_VAR
from tests.waiting import poll_until
from tokens.services import token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HANG_S = 10.0
FAST_S = 1.0
CATCH_UP_S = 10.0


@dataclass
class HungStack:
    redis: stack.EmbeddedRedis
    url: str
    worker: ServerProcess


@pytest.fixture
def hung_stack(child_env: dict[str, str]) -> Iterator[HungStack]:
    """A private Redis, with a worker (two processes) and daphne using it; Redis is always
    continued (SIGCONT) before it is stopped."""
    redis = stack.EmbeddedRedis(
        root=TEST_VAR / "redis-hang",
        port=stack.free_port(),
        persist=False,
        secret_name="test-redis-password",
    )
    redis.start()
    env = {**child_env, "REDIS_URL": redis.url()}
    started: list[ServerProcess] = []
    try:
        worker = start_celery_worker(env, concurrency=2)
        started.append(worker)
        daphne, url = start_daphne(env)
        started.append(daphne)
        yield HungStack(redis=redis, url=url, worker=worker)
    finally:
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGCONT)
        for process in reversed(started):
            process.stop()
        redis.stop()


class Api:
    def __init__(self, base: str, token: str, session: str) -> None:
        self.base = base
        self.token = token
        self.session = session

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """Status, body (JSON when it is) and the seconds the request took."""
        headers = {"Authorization": f"Token {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the test's loopback daphne
            f"{self.base}{path}", data=data, headers=headers, method=method
        )
        return self._send(request)

    def page(self, path: str) -> tuple[int, Any, float]:
        request = urllib.request.Request(  # noqa: S310 - the test's loopback daphne
            f"{self.base}{path}", headers={"Cookie": f"sessionid={self.session}"}
        )
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> tuple[int, Any, float]:
        began = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        seconds = time.monotonic() - began
        try:
            return status, json.loads(raw), seconds
        except ValueError:
            return status, raw.decode(), seconds


def done_chunks(job_id: int) -> int:
    return Job.objects.values_list("done_chunks", flat=True).get(pk=job_id)


def chunk_rate(job_id: int, seconds: float) -> float:
    """Chunks the job finished per second over the next `seconds` (from PostgreSQL)."""
    began, first = time.monotonic(), done_chunks(job_id)
    time.sleep(seconds)  # the measurement window itself: nothing to await
    return (done_chunks(job_id) - first) / (time.monotonic() - began)


def test_a_hung_redis_leaves_requests_fast_and_chunks_running(
    alice: User, hung_stack: HungStack
) -> None:
    client = Client()
    client.force_login(alice)
    api = Api(
        hung_stack.url,
        token_create(user=alice, name="hang", expires_in_days=1).key,
        client.cookies["sessionid"].value,
    )
    # 100 ms chunks on both processes: ~40 s of work, longer than the test's windows.
    status, long_job, _ = api.call(
        "POST", "/api/jobs/", {"kind": "burn", "params": {"chunks": 800, "ms": 100}}
    )
    assert status == 201, long_job
    poll_until(lambda: done_chunks(long_job["id"]) >= 10, timeout=60)
    rate_before = chunk_rate(long_job["id"], 5.0)
    redis = hung_stack.redis
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        hung_at = time.monotonic()
        done_at_hang = done_chunks(long_job["id"])
        status, short_job, submit_s = api.call(
            "POST", "/api/jobs/", {"kind": "burn", "params": {"chunks": 4, "ms": 100}}
        )
        status_detail, detail, detail_s = api.call("GET", f"/api/jobs/{long_job['id']}/")
        status_list, listing, list_s = api.call("GET", "/api/jobs/")
        status_page, page, page_s = api.page("/")
        # The rest of the hang: the chunks finished in it, at what rate.
        time.sleep(max(HANG_S - (time.monotonic() - hung_at), 0))  # the outage itself
        hang_s = time.monotonic() - hung_at
        done_in_hang = done_chunks(long_job["id"]) - done_at_hang
        status_cancel, _, cancel_s = api.call("POST", f"/api/jobs/{long_job['id']}/cancel/")
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    back = time.monotonic()
    poll_until(
        lambda: Job.objects.filter(pk=short_job["id"], status="succeeded").exists(),
        timeout=60,
        every=0.1,
    )
    catch_up_s = time.monotonic() - back
    # Once it answers, the overview says nothing more about it (daphne's breaker closes
    # at its next PING, one a second).
    poll_until(lambda: 'id="broker-unavailable"' not in api.page("/")[1], timeout=5, every=0.1)
    banner_gone_s = time.monotonic() - back
    rate_during = done_in_hang / hang_s
    print(  # the figures the issue asks for, in the test's output (-s)
        f"submit {submit_s:.3f} s, detail {detail_s:.3f} s, list {list_s:.3f} s, "
        f"overview {page_s:.3f} s, cancel {cancel_s:.3f} s, chunks/s before {rate_before:.2f} "
        f"during {rate_during:.2f} (ratio {rate_during / rate_before:.2f}), short job done "
        f"{catch_up_s:.1f} s after Redis answered, the overview's banner gone after "
        f"{banner_gone_s:.1f} s"
    )

    assert status == 201, short_job
    assert short_job["status"] == "pending"
    assert submit_s < FAST_S
    assert (status_detail, status_list, status_page, status_cancel) == (200, 200, 200, 200)
    assert max(detail_s, list_s, page_s, cancel_s) < FAST_S
    assert "broker (Redis) is not answering" in (detail["broker_unavailable"] or "")
    assert "broker (Redis) is not answering" in page
    active = [job for job in listing["results"] if job["status"] in ("pending", "running")]
    assert active
    assert all(job["broker_unavailable"] for job in active)
    # Chunks went on during the hang at about their normal rate.
    assert rate_during >= 0.7 * rate_before, (rate_before, rate_during)
    assert catch_up_s < CATCH_UP_S
