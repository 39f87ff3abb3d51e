"""Prometheus metrics at /metrics, computed at scrape time from PostgreSQL and Redis.

Nothing is counted in process memory: daphne, every worker process and every machine write
to the same database and Redis, so one scrape of any web process sees the whole cluster.
Counters (`…_total`) are counts of chunk rows: they only fall when jobs are deleted, which
Prometheus' `rate()` treats like a counter reset. Label sets are bounded (kinds, statuses,
hosts, worker states); job ids never become labels.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, DurationField, ExpressionWrapper, F, FloatField, Q, Sum
from django.db.models.functions import Extract
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jobs import kinds
from jobs.engine import dispatch, redis_clients, workers
from jobs.models import Chunk, Job
from tokens import services as tokens
from tokens.authentication import key_from_header

logger = logging.getLogger(__name__)

# Run time of one chunk, seconds. Chunks should take >= 0.3 s (docs/job-kinds.md) and are capped by
# COREBOARD_CHUNK_TIME_LIMIT_S (600 s by default).
CHUNK_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# "Recently finished" jobs whose speedup and efficiency are reported.
RECENT_JOBS_WINDOW = timedelta(hours=1)
RECENT_JOBS_LIMIT = 1000


def _kind_names(*seen: Iterable[str]) -> list[str]:
    names = {kind.name for kind in kinds.all_kinds()}
    for more in seen:
        names.update(more)
    return sorted(names)


def job_metrics() -> Iterator[Metric]:
    counts = {
        (row["status"], row["kind"]): row["n"]
        for row in Job.objects.order_by().values("status", "kind").annotate(n=Count("id"))
    }
    jobs = GaugeMetricFamily(
        "coreboard_jobs", "Jobs by status and kind.", labels=["status", "kind"]
    )
    for kind in _kind_names(kind for _, kind in counts):
        for status in Job.Status.values:
            jobs.add_metric([status, kind], counts.get((status, kind), 0))
    yield jobs

    since = timezone.now() - RECENT_JOBS_WINDOW
    recent = (
        Job.objects.filter(status=Job.Status.SUCCEEDED, finished_at__gte=since)
        .exclude(started_at=None)
        .only(
            "kind",
            "status",
            "parallelism",
            "cpu_seconds",
            "started_at",
            "finished_at",
            "baseline_seconds",
            "processes_used",
        )
        .order_by("-finished_at")[:RECENT_JOBS_LIMIT]
    )
    speedups: dict[str, list[float]] = defaultdict(list)
    efficiencies: dict[str, list[float]] = defaultdict(list)
    for job in recent:
        if job.speedup is not None:
            speedups[job.kind].append(job.speedup)
        if job.efficiency is not None:
            efficiencies[job.kind].append(job.efficiency)
    window = f"the last {int(RECENT_JOBS_WINDOW.total_seconds())} s"
    number = GaugeMetricFamily(
        "coreboard_recent_jobs", f"Jobs that succeeded in {window}.", labels=["kind"]
    )
    speedup = GaugeMetricFamily(
        "coreboard_recent_job_speedup_ratio",
        f"Mean speedup (time one process would take / wall seconds; a measured "
        f"parallelism-1 run, else the chunks' CPU seconds) of jobs that succeeded in {window}.",
        labels=["kind"],
    )
    efficiency = GaugeMetricFamily(
        "coreboard_recent_job_efficiency_ratio",
        f"Mean parallel efficiency (speedup / processes used) of jobs that succeeded in {window}.",
        labels=["kind"],
    )
    for kind, values in sorted(speedups.items()):
        number.add_metric([kind], len(values))
        speedup.add_metric([kind], sum(values) / len(values))
    for kind, values in sorted(efficiencies.items()):
        efficiency.add_metric([kind], sum(values) / len(values))
    yield from (number, speedup, efficiency)


def chunk_metrics() -> Iterator[Metric]:
    done = Q(status=Chunk.Status.DONE)
    # Seconds with their fraction (Extract's default output field is an integer).
    run_time = Extract(
        ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
        "epoch",
        output_field=FloatField(),
    )
    buckets = {
        f"le_{i}": Count("id", filter=done & Q(run_seconds__lte=bound))
        for i, bound in enumerate(CHUNK_SECONDS_BUCKETS)
    }
    rows = list(
        Chunk.objects.order_by()
        .annotate(run_seconds=run_time)
        .values("job__kind")
        .annotate(
            done=Count("id", filter=done),
            timed=Count("id", filter=done & Q(run_seconds__isnull=False)),
            run_seconds_sum=Sum("run_seconds", filter=done),
            cpu_seconds=Sum("cpu_seconds", filter=done),
            failed=Count("id", filter=Q(status=Chunk.Status.FAILED)),
            retried=Count("id", filter=Q(attempts__gt=1)),
            running=Count("id", filter=Q(status=Chunk.Status.RUNNING)),
            **buckets,
        )
    )
    by_kind = {row["job__kind"]: row for row in rows}
    names = _kind_names(by_kind)
    families: dict[str, Any] = {
        "done": CounterMetricFamily(
            "coreboard_chunks_done", "Chunks that finished successfully.", labels=["kind"]
        ),
        "failed": CounterMetricFamily(
            "coreboard_chunks_failed", "Chunks that failed for good.", labels=["kind"]
        ),
        "retried": CounterMetricFamily(
            "coreboard_chunks_retried",
            "Chunks delivered more than once (a retry after an error, or a lost worker).",
            labels=["kind"],
        ),
        "cpu_seconds": CounterMetricFamily(
            "coreboard_chunk_cpu_seconds",
            "CPU seconds spent by chunks that finished successfully.",
            labels=["kind"],
        ),
    }
    histogram = HistogramMetricFamily(
        "coreboard_chunk_run_seconds",
        "Wall time of chunks that finished successfully, from start to finish.",
        labels=["kind"],
    )
    in_flight = GaugeMetricFamily(
        "coreboard_chunks_in_flight",
        "Chunks running on a worker process (claimed under a lease).",
        labels=["status"],
    )
    running = 0
    for kind in names:
        row = by_kind.get(kind, {})
        for key, family in families.items():
            family.add_metric([kind], row.get(key) or 0)
        histogram.add_metric(
            [kind],
            buckets=[
                *[
                    (_bucket_label(bound), row.get(f"le_{i}", 0))
                    for i, bound in enumerate(CHUNK_SECONDS_BUCKETS)
                ],
                ("+Inf", row.get("timed", 0)),
            ],
            sum_value=row.get("run_seconds_sum") or 0.0,
        )
        running += row.get("running", 0)
    # The `status` label stays (one value now) so that existing queries keep matching.
    in_flight.add_metric(["running"], running)
    yield from (*families.values(), histogram, in_flight)


def _bucket_label(bound: float) -> str:
    return repr(float(bound))


def redis_metrics() -> Iterator[Metric]:
    """Broker queue depth and the live cluster state that workers keep in Redis."""
    up = GaugeMetricFamily("coreboard_redis_up", "1 when Redis answered this scrape.")
    # The default queue and every kind's (slots go to their kind's queue).
    names = sorted(
        {settings.CELERY_TASK_DEFAULT_QUEUE}
        | set(dispatch.worker_kind_queues(kind.name for kind in kinds.all_kinds()))
    )
    try:
        depths = {name: _queue_depth(name) for name in names}
        state = workers.cluster_state()
    except redis.RedisError:
        logger.warning("metrics: Redis did not answer", exc_info=True)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    queue = GaugeMetricFamily(
        "coreboard_queue_messages", "Messages waiting in a Celery queue.", labels=["queue"]
    )
    for name, depth in depths.items():
        queue.add_metric([name], depth)
    yield queue

    processes = GaugeMetricFamily(
        "coreboard_worker_processes",
        "Worker processes by host and state (busy, idle, or lost: no heartbeat).",
        labels=["host", "state"],
    )
    by_host_state = Counter((p["host"], p["state"]) for p in state["processes"])
    for host in sorted({host for host, _ in by_host_state}):
        for worker_state in ("busy", "idle", "lost"):
            processes.add_metric([host, worker_state], by_host_state[(host, worker_state)])
    yield processes

    cpu = GaugeMetricFamily(
        "coreboard_host_cpu_usage_ratio",
        "Mean CPU use of a worker machine's cores (0..1), sampled every second.",
        labels=["host"],
    )
    cores = GaugeMetricFamily("coreboard_host_cpus", "Cores of a worker machine.", labels=["host"])
    seen: set[str] = set()
    for node in state["nodes"]:
        # Several nodes may run on one machine: its CPU is reported once.
        if node["lost"] or not node["cpus"] or node["host"] in seen:
            continue
        seen.add(node["host"])
        cpu.add_metric([node["host"]], sum(node["cpus"]) / len(node["cpus"]) / 100)
        cores.add_metric([node["host"]], len(node["cpus"]))
    yield from (cpu, cores)


def _queue_depth(queue: str) -> int:
    # Kombu's Redis transport keeps one list per priority step besides the plain one.
    pipe = redis_clients.broker().pipeline(transaction=False)
    for name in [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]:
        pipe.llen(name)
    return sum(pipe.execute())


class CoreboardCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from job_metrics()
        yield from chunk_metrics()
        yield from redis_metrics()


registry = CollectorRegistry(auto_describe=False)
registry.register(CoreboardCollector())


def scrape_allowed(request: HttpRequest) -> bool:
    """A staff member's API token, or an address in COREBOARD_METRICS_ALLOWED_IPS."""
    key = key_from_header(request.headers.get("Authorization"))
    if key is not None:
        token = tokens.token_authenticate(key=key)
        return token is not None and token.user.is_staff
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(allowed, strict=False)
        for allowed in settings.COREBOARD_METRICS_ALLOWED_IPS
    )


@login_not_required
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        response = HttpResponse(
            "Send a staff member's API token (Authorization: Token <key>), or scrape from an "
            "address in COREBOARD_METRICS_ALLOWED_IPS.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = "Token"
        return response
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
