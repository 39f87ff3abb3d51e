"""/metrics: Prometheus text computed from PostgreSQL and Redis, for staff tokens or allowed
addresses only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.factories import make_job
from tests.metrics_scrape import FAMILIES, parse, value
from tokens import services as token_services


@pytest.mark.api
@pytest.mark.django_db
def test_anonymous_and_non_staff_scrapes_are_refused(alice: User) -> None:
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert "COREBOARD_METRICS_ALLOWED_IPS" in response.content.decode()
    key = token_services.token_create(user=alice, name="not staff").key
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token wrong").status_code == 401


@pytest.mark.api
@pytest.mark.django_db
def test_allowed_addresses_scrape_without_a_token(settings: object) -> None:
    settings.COREBOARD_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]  # type: ignore[attr-defined]
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401
    response = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert response.status_code == 200
    parse(response.content.decode())


@pytest.mark.api
@pytest.mark.django_db
def test_values_come_from_the_database(alice: User, staff: User, dispatched: list[int]) -> None:
    job = make_job(alice, "primes", start=0, stop=1000, chunks=4)
    # A hand-made history: two chunks done (0.2 s and 3 s), one failed after a retry.
    chunks = list(job.chunks.order_by("index"))
    now = job.created_at
    for chunk, status, seconds, attempts in [
        (chunks[0], "done", 0.2, 1),
        (chunks[1], "done", 3.0, 1),
        (chunks[2], "failed", 1.0, 2),
        (chunks[3], "running", None, 1),
    ]:
        chunk.status = status
        chunk.attempts = attempts
        chunk.started_at = now
        chunk.finished_at = now + timedelta(seconds=seconds) if seconds else None
        chunk.cpu_seconds = seconds
        chunk.save()
    key = token_services.token_create(user=staff, name="prometheus").key
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = parse(response.content.decode())
    assert value(samples, "coreboard_jobs", status="pending", kind="primes") == 1
    assert value(samples, "coreboard_jobs", status="succeeded", kind="burn") == 0
    assert value(samples, "coreboard_chunks_done_total", kind="primes") == 2
    assert value(samples, "coreboard_chunks_failed_total", kind="primes") == 1
    assert value(samples, "coreboard_chunks_retried_total", kind="primes") == 1
    assert value(samples, "coreboard_chunk_cpu_seconds_total", kind="primes") == pytest.approx(3.2)
    assert value(samples, "coreboard_chunk_run_seconds_bucket", kind="primes", le="0.25") == 1
    assert value(samples, "coreboard_chunk_run_seconds_bucket", kind="primes", le="2.5") == 1
    assert value(samples, "coreboard_chunk_run_seconds_bucket", kind="primes", le="5.0") == 2
    assert value(samples, "coreboard_chunk_run_seconds_bucket", kind="primes", le="+Inf") == 2
    assert value(samples, "coreboard_chunk_run_seconds_count", kind="primes") == 2
    assert value(samples, "coreboard_chunk_run_seconds_sum", kind="primes") == pytest.approx(3.2)
    assert value(samples, "coreboard_chunks_in_flight", status="running") == 1
    assert value(samples, "coreboard_redis_up") == 1
    # No job ids as labels: every label is from a small, fixed set.
    for _, labels in samples:
        assert {name for name, _ in labels} <= {"kind", "status", "le", "host", "state", "queue"}


@pytest.mark.api
def test_grafana_dashboard_only_uses_metrics_we_export() -> None:
    import json
    import re

    from coreconf import paths

    dashboard = json.loads((paths.BASE_DIR / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set(re.findall(r"coreboard_[a-z_]+", " ".join(exprs)))
    exported = (
        set(FAMILIES)
        | {f"{name}_total" for name, kind in FAMILIES.items() if kind == "counter"}
        | {f"{name}_bucket" for name, kind in FAMILIES.items() if kind == "histogram"}
    )
    assert used
    assert used <= exported, used - exported
