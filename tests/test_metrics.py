"""/metrics: Prometheus text computed from PostgreSQL and Redis, for staff tokens or allowed
addresses only."""

from __future__ import annotations

from datetime import timedelta

import httpx
import psutil
import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.processes import ServerProcess
from tests.waiting import wait_for_job
from tokens import services as token_services

FAMILIES = {
    "coreboard_jobs": "gauge",
    "coreboard_recent_jobs": "gauge",
    "coreboard_recent_job_speedup_ratio": "gauge",
    "coreboard_recent_job_efficiency_ratio": "gauge",
    "coreboard_chunks_done": "counter",
    "coreboard_chunks_failed": "counter",
    "coreboard_chunks_retried": "counter",
    "coreboard_chunk_cpu_seconds": "counter",
    "coreboard_chunk_run_seconds": "histogram",
    "coreboard_chunks_in_flight": "gauge",
    "coreboard_redis_up": "gauge",
    "coreboard_queue_messages": "gauge",
    "coreboard_worker_processes": "gauge",
    "coreboard_host_cpu_usage_ratio": "gauge",
    "coreboard_host_cpus": "gauge",
}


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and sorted labels; checks each family's type."""
    samples: Samples = {}
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert name in families, f"{name} is missing"
        assert families[name].type == kind, name
    for family in families.values():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


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


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_job_moves_the_counters_by_its_chunks(
    daphne_server: str, celery_worker: ServerProcess, alice: User, staff: User
) -> None:
    key = token_services.token_create(user=staff, name="prometheus").key

    def scrape() -> Samples:
        response = httpx.get(f"{daphne_server}/metrics", headers={"Authorization": f"Token {key}"})
        assert response.status_code == 200
        return parse(response.text)

    before = scrape()
    job = make_job(alice, chunks=3, ms=50, parallelism=2, committed=True)
    job = wait_for_job(job.pk, until={"succeeded", "failed"})
    assert job.status == Job.Status.SUCCEEDED, job.error
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("coreboard_chunks_done_total", kind="burn") == 3
    assert grew("coreboard_chunk_run_seconds_count", kind="burn") == 3
    assert grew("coreboard_jobs", status="succeeded", kind="burn") == 1
    assert (
        value(after, "coreboard_jobs", status="succeeded", kind="burn")
        == Job.objects.filter(kind="burn", status="succeeded").count()
    )
    assert (
        value(after, "coreboard_chunks_done_total", kind="burn")
        == Chunk.objects.filter(job__kind="burn", status="done").count()
    )
    # The database holds this test's job alone (a transactional test starts empty).
    assert value(after, "coreboard_recent_jobs", kind="burn") == 1
    assert job.speedup is not None
    assert value(after, "coreboard_recent_job_speedup_ratio", kind="burn") == pytest.approx(
        job.speedup
    )
    # The suite's worker: two prefork processes on this machine, and its CPU sampler.
    processes = {
        labels: count for (name, labels), count in after.items()
        if name == "coreboard_worker_processes"
    }  # fmt: skip
    assert sum(count for labels, count in processes.items() if ("state", "lost") not in labels) >= 2
    # Every worker of this suite runs on this machine.
    cores = {count for (name, _), count in after.items() if name == "coreboard_host_cpus"}
    assert cores == {psutil.cpu_count()}


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
