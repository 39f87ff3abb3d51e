"""What the benchmarks share: private services, Django, real workers and daphne."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coreconf import paths
from launcher import stack

if TYPE_CHECKING:
    from tests.processes import ServerProcess

BENCH_VAR = paths.VAR_DIR / "bench"
BENCH_LIMITS = {
    "COREBOARD_RATE_JOB_CREATE": "100000/minute",
    "COREBOARD_QUOTA_ACTIVE_JOBS": "1000",
    "COREBOARD_QUOTA_CHUNKS": "100000000",
    "COREBOARD_QUOTA_JOB_S": "100000000",
    "COREBOARD_QUOTA_CHUNK_S": "100000000",
    "COREBOARD_RATE_JOB_ACTION": "100000/minute",
}


def machine() -> str:
    """The machine in words, for the report."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.node()}: {model}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def _cancel_leftovers() -> None:
    """Jobs an interrupted run left active would compete with the measured ones."""
    from jobs import services
    from jobs.models import Job

    for job in Job.objects.filter(status__in=Job.ACTIVE_STATUSES):
        services.job_cancel(job=job)


@dataclass(frozen=True)
class Stack:
    base_url: str
    worker_pid: int
    # The worker (None without one): its output holds the slots' figures.
    worker: ServerProcess | None
    # The environment the worker and daphne got, for benchmarks that start workers of their own.
    env: dict[str, str]
    # What the stack stops when it ends (a benchmark may add the workers it started).
    processes: list[ServerProcess]

    def stop_later(self, process: ServerProcess) -> None:
        self.processes.append(process)


@contextlib.contextmanager
def running_stack(*, workers: int, worker_lacks: frozenset[str] = frozenset()) -> Iterator[Stack]:
    """Private PostgreSQL and Redis, a migrated database, a prefork worker with `workers`
    processes (none for 0) and daphne; yields daphne's base URL and the worker's main pid
    (0 without one), and stops everything afterwards. The worker runs every kind but
    `worker_lacks` (those are for workers a benchmark starts itself)."""
    # A benchmark stopped with SIGTERM still stops the servers it started (below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Redis starts empty, so no message of an earlier, interrupted run is redelivered.
    stops = stack.start_private_services(
        BENCH_VAR, secret_name="bench-pg-password", persist=False
    ).stops()
    processes: list[ServerProcess] = []
    try:
        import django

        # The benchmarks submit far faster, and keep more work active, than one person may.
        for name, value in BENCH_LIMITS.items():
            os.environ.setdefault(name, value)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        django.setup()
        from django.core.management import call_command

        from tests.processes import start_celery_worker, start_daphne

        call_command("migrate", "--noinput", verbosity=0)
        call_command("media_mark")
        _cancel_leftovers()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        worker_pid = 0
        worker: ServerProcess | None = None
        if workers:
            worker_env = env
            if worker_lacks:
                from jobs import kinds

                runs = [kind.name for kind in kinds.all_kinds() if kind.name not in worker_lacks]
                worker_env = {**env, "COREBOARD_WORKER_KINDS": ",".join(runs)}
            worker = start_celery_worker(worker_env, concurrency=workers)
            processes.append(worker)
            worker_pid = worker.process.pid
        daphne, base_url = start_daphne(env)
        processes.append(daphne)
        yield Stack(
            base_url=base_url, worker_pid=worker_pid, worker=worker, env=env, processes=processes
        )
    finally:
        for process in reversed(processes):
            process.stop()
        for stop in reversed(stops):
            stop()
