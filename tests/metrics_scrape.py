"""Reading a /metrics scrape: the families Coreboard exports, and a scrape's samples by name
and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# Every family /metrics exports, and its Prometheus type.
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

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


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


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
