"""`make bench`: the same primes job serially, on multiprocessing.Pool, and through Coreboard.

All three run in one invocation on the same machine, interleaved round by round, and
BENCHMARKS.md gets the medians and the ratios between them. Coreboard's time is from the
API request leaving the client to the job's recorded finish (`finished_at`, same clock):
the whole path through daphne, PostgreSQL, the Redis broker and the prefork workers.

Environment: BENCH_RUNS (default 7), BENCH_SERIAL_SECONDS (about 4), BENCH_CHUNKS (12).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from tests.benchmarks import harness, report


def _run_spec(spec: dict[str, int]) -> dict[str, int]:
    from jobs.kinds.primes import count_primes

    return {"count": count_primes(spec["start"], spec["stop"])}


def _calibrated_stop(target_seconds: float) -> int:
    """A `stop` for which counting [0, stop) takes about target_seconds here.

    Sieving gets dearer per number as numbers grow, so the probe window sits near the
    middle of the likely range rather than at its start.
    """
    from jobs.kinds.primes import count_primes

    window = 20_000_000
    stop = 1_000_000_000
    for _ in range(2):
        middle = stop // 2
        began = time.perf_counter()
        count_primes(middle, middle + window)
        per_number = (time.perf_counter() - began) / window
        stop = int(target_seconds / per_number)
    return max(stop // 10_000_000 * 10_000_000, 10_000_000)


def _overheads(job: Any, sent: datetime) -> dict[str, float]:
    """Where Coreboard's time goes beyond the chunks themselves, in milliseconds."""
    chunks = list(job.chunks.order_by("started_at"))
    by_pid: dict[int, list[Any]] = {}
    for chunk in chunks:
        by_pid.setdefault(chunk.pid, []).append(chunk)
    gaps = [
        (b.started_at - a.finished_at).total_seconds()
        for runs in by_pid.values()
        for a, b in itertools.pairwise(runs)
    ]
    return {
        "submit to first chunk": (chunks[0].started_at - sent).total_seconds() * 1000,
        "between chunks in one process (median)": statistics.median(gaps) * 1000,
        "last chunk to job finished": (
            job.finished_at - max(c.finished_at for c in chunks)
        ).total_seconds()
        * 1000,
    }


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "7"))
    target = float(os.environ.get("BENCH_SERIAL_SECONDS", "4"))
    chunk_count = int(os.environ.get("BENCH_CHUNKS", "12"))
    cores = os.cpu_count() or 1
    with harness.running_stack(workers=cores) as base_url:
        from django.contrib.auth import get_user_model

        from jobs import kinds
        from jobs.models import Job
        from tokens.services import token_create

        user, _ = get_user_model().objects.get_or_create(username="bench")
        token_key = token_create(user=user, name="benchmark", expires_in_days=1).key

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
                    "Authorization": f"Token {token_key}",
                    "Content-Type": "application/json",
                },
            )
            sent = datetime.now(UTC)
            with urllib.request.urlopen(request) as response:  # noqa: S310
                job_id = json.load(response)["id"]
            # The time is read from the job's own finished_at, so this wait only has to be
            # cheap: a slow poll takes no CPU from the workers, unlike following every event.
            deadline = time.monotonic() + 600
            while (job := Job.objects.get(pk=job_id)).is_active and time.monotonic() < deadline:
                time.sleep(0.25)
            if job.status != Job.Status.SUCCEEDED or job.finished_at is None:
                raise RuntimeError(f"benchmark job {job_id} ended {job.status}: {job.error}")
            overheads.append(_overheads(job, sent))
            return job.result, (job.finished_at - sent).total_seconds()

        overheads: list[dict[str, float]] = []
        coreboard()  # warm the workers' connections, like the warmed pool below
        overheads.clear()
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
        _write_report(params, cores, runs, times, expected, overheads)
    return 0


def _write_report(
    params: dict[str, int],
    cores: int,
    runs: int,
    times: dict[str, list[float]],
    result: Any,
    overheads: list[dict[str, float]],
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
    overhead_rows = "\n".join(
        f"| {name} | {statistics.median(o[name] for o in overheads):.1f} |" for name in overheads[0]
    )
    report.write_section(
        "speedup",
        f"""Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {harness.machine()}.

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

Where Coreboard's extra time goes (from the chunks' recorded timestamps, median of runs):

| overhead | ms |
|---|---|
{overhead_rows}

Absolute times on shared machines are noise; the ratios, measured side by side in one
run, are the figures to quote.
""",
    )
    print(f"speedup (a)/(c) = {speedup:.2f}x, ratio (c)/(b) = {ratio:.3f}; wrote BENCHMARKS.md")


if __name__ == "__main__":
    sys.exit(main())
