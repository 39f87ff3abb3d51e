"""/metrics scraped from the real daphne while a real worker runs a job: the counters move
by its chunks."""

from __future__ import annotations

import httpx
import psutil
import pytest
from django.contrib.auth.models import User

from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.metrics_scrape import Samples, parse, value
from tests.processes import ServerProcess
from tests.waiting import wait_for_job
from tokens import services as token_services


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
