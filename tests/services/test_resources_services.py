"""The process sampler of a worker's main process: its pool's busy children measured from
outside (a real child process here), published and stored per job and process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from jobs.engine import resources, workers
from jobs.models import ProcessSample
from tests.factories import make_job

pytestmark = [pytest.mark.services, pytest.mark.django_db]

NODE = "sampler-test@host"


@pytest.fixture
def spinning_child() -> Iterator[subprocess.Popen[bytes]]:
    """A process that keeps one core busy, as a chunk would."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_busy_child_is_sampled_from_outside_and_stored_under_its_process(
    alice: User, spinning_child: subprocess.Popen[bytes]
) -> None:
    job = make_job(alice, chunks=1)
    busy = [(spinning_child.pid, job.pk)]
    sampler = resources.ProcessSampler(NODE, lambda: busy)
    sampler.sample()  # primes the child's CPU counter: nothing measured yet
    time.sleep(0.3)
    sampler.sample()
    sampler.store()
    sample = ProcessSample.objects.get(job=job)
    assert sample.process == workers.process_id(node=NODE, pid=spinning_child.pid)
    assert sample.cpu_percent > 0  # a share of a core, however busy the machine
    assert sample.rss > 0


def test_a_child_that_went_idle_is_sampled_a_moment_longer_then_not(
    alice: User, spinning_child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(alice, chunks=1)
    busy = [(spinning_child.pid, job.pk)]
    sampler = resources.ProcessSampler(NODE, lambda: busy)
    sampler.sample()
    busy.clear()  # between two chunks: the job's timeline goes on
    sampler.sample()
    assert len(sampler._unsaved) == 1
    later = time.monotonic() + resources.SAMPLE_INTERVAL_S * 2
    monkeypatch.setattr(time, "monotonic", lambda: later)
    sampler.sample()
    assert len(sampler._unsaved) == 1


def test_a_child_that_is_gone_is_forgotten(alice: User) -> None:
    job = make_job(alice, chunks=1)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    sampler = resources.ProcessSampler(NODE, lambda: [(gone.pid, job.pk)])
    sampler.sample()
    sampler.sample()
    assert not sampler._unsaved
