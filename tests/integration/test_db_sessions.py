"""No machine can freeze the cluster: a node frozen while it holds a job's lock stalls the
real workers only until the server ends its session (project.settings COREBOARD_DB_*).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.contrib.auth.models import User

from coreconf import paths
from jobs.models import Chunk, Job
from tests.factories import make_job
from tests.processes import start_celery_worker
from tests.waiting import poll_until

FROZEN_NODE_RECOVERY_S = 30


def _done(job_id: int) -> int:
    return Job.objects.values_list("done_chunks", flat=True).get(pk=job_id)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_node_frozen_while_holding_a_job_lock_stalls_nobody_for_long(
    alice: User, child_env: dict[str, str]
) -> None:
    """A machine partitioned mid-transaction is, to PostgreSQL, a session idle in a
    transaction that never speaks again: a process that takes a job's lock with the
    project's settings and is then stopped (SIGSTOP) looks exactly like that."""
    other_node = start_celery_worker(child_env, concurrency=2)
    frozen: subprocess.Popen[str] | None = None
    try:
        busy = make_job(alice, chunks=400, ms=50, parallelism=4, committed=True)
        poll_until(lambda: _done(busy.pk) >= 4, timeout=60)
        frozen = subprocess.Popen(
            [sys.executable, "-c", _FREEZE_HOLDING_LOCK, str(busy.pk)],
            cwd=paths.BASE_DIR,
            env=child_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert frozen.stdout is not None
        assert frozen.stdout.readline().strip() == "locked"
        frozen_at = time.monotonic()
        unrelated = make_job(alice, chunks=8, ms=50, parallelism=2, committed=True)
        done_when_frozen = _done(busy.pk)

        poll_until(
            lambda: _done(busy.pk) > done_when_frozen and _done(unrelated.pk) > 0,
            timeout=FROZEN_NODE_RECOVERY_S,
        )
        recovered_after = time.monotonic() - frozen_at
        poll_until(
            lambda: Job.objects.get(pk=unrelated.pk).status == Job.Status.SUCCEEDED, timeout=60
        )
    finally:
        if frozen is not None:
            frozen.kill()
            frozen.wait()
        other_node.stop()
        Job.objects.filter(status__in=Job.ACTIVE_STATUSES).update(status=Job.Status.CANCELLED)
        Chunk.objects.filter(status=Chunk.Status.PENDING).update(status=Chunk.Status.CANCELLED)
    assert recovered_after < FROZEN_NODE_RECOVERY_S


_FREEZE_HOLDING_LOCK = """
import os, signal, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()
from django.db import transaction
from jobs.engine.job_state import job_lock
with transaction.atomic():
    job_lock(int(sys.argv[1]))
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""
