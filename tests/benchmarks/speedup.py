"""`make bench`: the same primes job serially, on multiprocessing.Pool, and through Coreboard.

All three run in one invocation on the same machine, interleaved round by round, and
BENCHMARKS.md gets the medians and the ratios between them. Coreboard's time is from the
API request leaving the client to the job's recorded finish (`finished_at`, same clock):
the whole path through daphne, PostgreSQL, the Redis broker and the prefork workers.

Environment: BENCH_RUNS (default 5), BENCH_SERIAL_SECONDS (about 4), BENCH_CHUNKS (12).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from project import stack

BENCH_VAR = stack.VAR_DIR / "bench"
REPORT = stack.BASE_DIR / "BENCHMARKS.md"


def _start_services() -> list[Any]:
    stopped: list[Any] = []
    if "DATABASE_URL" not in os.environ:
        postgres = stack.EmbeddedPostgres(
            root=BENCH_VAR / "pg", port=stack.free_port(), secret_name="bench-pg-password"
        )
        postgres.start()
        stopped.append(postgres.stop)
        os.environ["DATABASE_URL"] = postgres.url()
    if "REDIS_URL" not in os.environ:
        redis = stack.EmbeddedRedis(root=BENCH_VAR / "redis", port=stack.free_port())
        redis.start()
        stopped.append(redis.stop)
        os.environ["REDIS_URL"] = redis.url()
    return stopped


def _run_spec(spec: dict[str, int]) -> dict[str, int]:
    from jobs.kinds.primes import count_primes

    return {"count": count_primes(spec["start"], spec["stop"])}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _calibrated_stop(target_seconds: float) -> int:
    from jobs.kinds.primes import count_primes

    probe = 50_000_000
    began = time.perf_counter()
    count_primes(0, probe)
    elapsed = time.perf_counter() - began
    return max(int(probe * target_seconds / elapsed) // 10_000_000 * 10_000_000, 10_000_000)


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    target = float(os.environ.get("BENCH_SERIAL_SECONDS", "4"))
    chunk_count = int(os.environ.get("BENCH_CHUNKS", "12"))
    cores = os.cpu_count() or 1
    os.environ["DB_CONN_MAX_AGE"] = "0"
    cleanups = _start_services()
    workers: list[Any] = []
    try:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        from jobs import kinds
        from jobs.models import Job
        from tests.processes import start_celery_worker, start_daphne

        call_command("migrate", "--noinput", verbosity=0)
        user, _ = get_user_model().objects.get_or_create(username="bench")
        token, _ = Token.objects.get_or_create(user=user)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        worker = start_celery_worker(env, concurrency=cores)
        workers.append(worker)
        daphne, base_url = start_daphne(env)
        workers.append(daphne)

        primes = kinds.get("primes")
        params = {"start": 0, "stop": _calibrated_stop(target), "chunks": chunk_count}
        specs = list(primes.split(params))
        expected = primes.combine(params, [_run_spec(s) for s in specs[:1]])  # warm-up
        print(f"primes {params} on {cores} cores, {runs} runs", flush=True)

        def serial() -> dict[str, int]:
            return primes.combine(params, [_run_spec(s) for s in specs])

        def coreboard() -> tuple[dict[str, int], float]:
            body = json.dumps({"kind": "primes", "params": params, "parallelism": cores})
            request = urllib.request.Request(  # noqa: S310 - our loopback daphne
                f"{base_url}/api/jobs/",
                data=body.encode(),
                headers={
                    "Authorization": f"Token {token.key}",
                    "Content-Type": "application/json",
                },
            )
            sent = datetime.now(UTC)
            with urllib.request.urlopen(request) as response:  # noqa: S310
                job_id = json.load(response)["id"]
            from tests.waiting import wait_for_job

            job = wait_for_job(job_id, until={"succeeded", "failed", "cancelled"}, timeout=600)
            if job.status != Job.Status.SUCCEEDED or job.finished_at is None:
                raise RuntimeError(f"benchmark job {job_id} ended {job.status}: {job.error}")
            return job.result, (job.finished_at - sent).total_seconds()

        times: dict[str, list[float]] = {"serial": [], "pool": [], "coreboard": []}
        with multiprocessing.get_context("fork").Pool(cores) as pool:
            pool.map(_run_spec, specs[:cores])  # warm the pool like the running workers
            for run in range(runs):
                began = time.perf_counter()
                expected = serial()
                times["serial"].append(time.perf_counter() - began)

                began = time.perf_counter()
                pooled = primes.combine(params, pool.map(_run_spec, specs, chunksize=1))
                times["pool"].append(time.perf_counter() - began)

                result, seconds = coreboard()
                times["coreboard"].append(seconds)
                if not (expected == pooled == result):
                    raise RuntimeError(f"results differ: {expected} {pooled} {result}")
                print(
                    f"run {run + 1}: serial {times['serial'][-1]:.2f} s, "
                    f"pool {times['pool'][-1]:.2f} s, coreboard {seconds:.2f} s",
                    flush=True,
                )
        _write_report(params, cores, runs, times, expected)
        return 0
    finally:
        for process in reversed(workers):
            process.stop()
        for cleanup in reversed(cleanups):
            cleanup()


def _write_report(
    params: dict[str, int], cores: int, runs: int, times: dict[str, list[float]], result: Any
) -> None:
    serial, pool, coreboard = (statistics.median(times[k]) for k in ("serial", "pool", "coreboard"))
    speedup = serial / coreboard
    ratio = coreboard / pool
    rows = "\n".join(
        f"| {name} | {statistics.median(values):.3f} | "
        + ", ".join(f"{v:.3f}" for v in values)
        + " |"
        for name, values in (
            ("(a) serial, one process", times["serial"]),
            (f"(b) multiprocessing.Pool({cores})", times["pool"]),
            ("(c) Coreboard (API submit → succeeded)", times["coreboard"]),
        )
    )
    REPORT.write_text(
        f"""# Benchmarks

Written by `make bench` ({Path(__file__).relative_to(stack.BASE_DIR)}); do not edit by hand.

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {_cpu_model()},
{cores} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}.

## primes: serial vs multiprocessing.Pool vs Coreboard

The same `primes` job, `{json.dumps(params)}` (result `{json.dumps(result)}`),
{params["chunks"]} chunks, parallelism {cores}, {cores} prefork worker processes;
{runs} rounds, each running (a), (b), (c) back to back. Times in seconds.

| setup | median | all runs |
|---|---|---|
{rows}

| figure | value | goal ({cores} cores) |
|---|---|---|
| speedup of Coreboard over serial, (a)/(c) | **{speedup:.2f}×** | ≥ {0.925 * cores:.2f}× |
| Coreboard wall time over Pool's, (c)/(b) | **{ratio:.3f}** | ≤ 1.10 |

Absolute times on shared machines are noise; the ratios, measured side by side in one
run, are the figures to quote.
"""
    )
    print(f"speedup (a)/(c) = {speedup:.2f}x, ratio (c)/(b) = {ratio:.3f}; wrote {REPORT.name}")


if __name__ == "__main__":
    sys.exit(main())
