"""`python -m tests.benchmarks.scaling`: a 1, 2, 4, … N process sweep of one primes job.

For each p, a fresh `celery worker --pool=prefork --concurrency=p` is the only worker (so
nothing but p processes exists to run chunks; a worker with more processes and a job of
parallelism p would leave idle processes that still beat and reconcile), the job runs at
parallelism p, and its wall time is the job's own started → finished (the job page's
definition). `multiprocessing.Pool(p).map` over the same chunk specs is measured beside it, round by
round (Coreboard and Pool back to back, which goes first alternating), so their ratio is
taken under the same load. Speedup, efficiency, Karp-Flatt and the Amdahl fit come from
jobs/scaling.py, and the "Scaling sweep" section of BENCHMARKS.md is replaced.

Needs only the project's virtualenv, PostgreSQL's server binaries (COREBOARD_PG_BIN) and
redis-server (COREBOARD_REDIS_SERVER); as root, PostgreSQL runs as an unprivileged user
created if missing (COREBOARD_PG_OS_USER).

Environment: BENCH_MAX_PROCS (default: the CPU count), BENCH_SCALING_SIZE (the primes
range's upper bound, default 2,000,000,000: about 25-40 s on one core of a 2020s x86 machine,
a few seconds at 16 processes), BENCH_SCALING_CHUNKS (64), BENCH_SCALING_RUNS (rounds per
level, medians taken; default 5: the Coreboard / Pool goal is judged on medians of at
least 5 interleaved rounds). With the defaults a quiet 2-core machine takes about 7 minutes
(one round per level took 1.5): 5 × (27 + 27 s) at p = 1 and 5 × (14 + 14 s) at p = 2.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from jobs import scaling
from tests.benchmarks import harness, report
from tests.benchmarks.speedup import Api, _pool, _run_spec, _timed, _wait, _wall

# Estimated chunk-seconds of a big sweep are over a person's default quota.
SCALING_LIMITS = {"COREBOARD_QUOTA_CHUNK_S": str(10**9)}
REGISTRATION_TIMEOUT_S = 30.0
# Coreboard's wall over Pool's at the same number of processes (the contract): on a
# machine of a few cores every level must be within 2 %, on a many-core one within 3 %.
RATIO_GOAL_FEW_CORES = 1.02
RATIO_GOAL_MANY_CORES = 1.03
MANY_CORES = 8


def _params() -> dict[str, Any]:
    return {
        "start": 0,
        "stop": int(os.environ.get("BENCH_SCALING_SIZE", "2000000000")),
        "chunks": int(os.environ.get("BENCH_SCALING_CHUNKS", "64")),
    }


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _processes_alive() -> int:
    from jobs.engine import workers

    return sum(worker.concurrency for worker in workers.live_workers().values())


def _level(
    api: Api,
    env: dict[str, str],
    p: int,
    params: dict[str, Any],
    specs: list[tuple[str, dict[str, Any]]],
    runs: int,
) -> tuple[list[float], list[float]]:
    """`runs` rounds at p processes, each a Coreboard run and a Pool run back to back
    (which goes first alternating): the walls of each."""
    from tests.processes import start_celery_worker

    worker = start_celery_worker(env, concurrency=p)
    try:
        # Slots are capped at the processes alive: submit once the worker has registered.
        _until(lambda: _processes_alive() == p, f"a worker of {p} processes to register")
        _wait(api.submit("burn", {"chunks": p, "ms": 50, "fail_rate": 0}, p))  # warm up
        ours: list[float] = []
        theirs: list[float] = []
        with _pool(p) as pool:
            pool.map(_run_spec, [("burn", {"index": 0, "ms": 10, "fail_rate": 0})] * p)
            for run in range(runs):
                for which in (0, 1) if run % 2 == 0 else (1, 0):
                    if which == 0:
                        job = _wait(api.submit("primes", params, p), timeout=3600)
                        ours.append(_wall(job))
                    else:
                        theirs.append(_timed(lambda: pool.map(_run_spec, specs, chunksize=1))[1])
                print(
                    f"p={p} run {run + 1} (load {os.getloadavg()[0]:.1f}): Coreboard "
                    f"{ours[-1]:.2f} s, Pool {theirs[-1]:.2f} s, {ours[-1] / theirs[-1]:.3f}",
                    flush=True,
                )
        return ours, theirs
    finally:
        worker.stop()
        _until(lambda: _processes_alive() == 0, "the worker to leave")


def main() -> int:
    max_procs = int(os.environ.get("BENCH_MAX_PROCS") or os.cpu_count() or 1)
    runs = int(os.environ.get("BENCH_SCALING_RUNS", "5"))
    levels = scaling.scaling_levels(max_procs)
    params = _params()
    for name, value in SCALING_LIMITS.items():
        os.environ.setdefault(name, value)
    coreboard: dict[int, list[float]] = {}
    pool: dict[int, list[float]] = {}
    with harness.running_stack(workers=0) as stack:
        from django.contrib.auth import get_user_model

        from jobs import kinds
        from tokens.services import token_create

        user, _ = get_user_model().objects.get_or_create(username="bench")
        api = Api(stack.base_url, token_create(user=user, name="bench", expires_in_days=1).key)
        specs = [("primes", spec) for spec in kinds.get("primes").split(params)]
        for p in levels:
            coreboard[p], pool[p] = _level(api, stack.env, p, params, specs, runs)
            print(
                f"p={p}: Coreboard {statistics.median(coreboard[p]):.2f} s, "
                f"Pool {statistics.median(pool[p]):.2f} s",
                flush=True,
            )
    section = _section(params, levels, runs, coreboard, pool)
    print(section)
    # One section per machine size, so a 2-core `make bench` keeps a many-core sweep.
    report.write_section(f"scaling-{os.cpu_count()}", section)
    print("wrote BENCHMARKS.md")
    return 0


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "" if value is None else f"{value:.{digits}f}{suffix}"


def _ratio_cells(ours: list[float], theirs: list[float], goal: float) -> str:
    """The median of the rounds' Coreboard / Pool ratios (bold, with whether it meets
    `goal`), and the rounds' ratios."""
    ratios = [mine / other for mine, other in zip(ours, theirs, strict=True)]
    median = statistics.median(ratios)
    verdict = "met" if median <= goal else "not met"
    return f"**{median:.3f}** ({verdict}) | " + ", ".join(f"{r:.3f}" for r in ratios)


def _section(
    params: dict[str, Any],
    levels: list[int],
    runs: int,
    coreboard: dict[int, list[float]],
    pool: dict[int, list[float]],
) -> str:
    ours = scaling.scaling_analyse({p: statistics.median(coreboard[p]) for p in levels})
    theirs = scaling.scaling_analyse({p: statistics.median(pool[p]) for p in levels})
    rows = []
    goal = RATIO_GOAL_MANY_CORES if (os.cpu_count() or 1) >= MANY_CORES else RATIO_GOAL_FEW_CORES
    serial = theirs.points[0].wall_seconds if theirs.points[0].parallelism == 1 else None
    for mine, other in zip(ours.points, theirs.points, strict=True):
        # Against Pool(1), the plain one-process run: Coreboard's own p = 1 carries its
        # overhead, which flatters its speedup over itself.
        honest = serial / mine.wall_seconds if serial and mine.wall_seconds else None
        ratio = _ratio_cells(coreboard[mine.parallelism], pool[mine.parallelism], goal)
        rows.append(
            f"| {mine.parallelism} | {_fmt(mine.wall_seconds)} | {_fmt(honest, 2, '×')} | "
            f"{_fmt(mine.speedup, 2, '×')} | "
            f"{_fmt(mine.efficiency and mine.efficiency * 100, 0, ' %')} | "
            f"{_fmt(mine.karp_flatt, 3)} | {_fmt(mine.amdahl_speedup, 2, '×')} | "
            f"{_fmt(other.wall_seconds)} | {_fmt(other.speedup, 2, '×')} | "
            f"{_fmt(other.karp_flatt, 3)} | {ratio} |"
        )
    body = "\n".join(rows)

    def fit(analysis: scaling.ScalingAnalysis) -> str:
        f = analysis.serial_fraction
        if f is None:
            return analysis.fit_note or "no fit"
        ceiling = f", at most {analysis.max_speedup:.0f}× with any number" if f else ""
        return f"f = {f:.4f}{ceiling}"

    return f"""## Scaling sweep ({os.cpu_count()} cores)

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {harness.machine()}.

`primes {params}` at each parallelism p, with a fresh prefork worker of exactly p processes
(Coreboard: the job's started → finished) and `multiprocessing.Pool(p).map(chunksize=1)` over
the same chunk specs, {runs} round(s) per level, each a Coreboard run and a Pool run back to
back (which goes first alternating); walls are medians. Coreboard / Pool wall is the median
of the rounds' own ratios (goal ≤ {goal}), the rounds' ratios beside it. Load average at
the end: {" / ".join(f"{load:.1f}" for load in os.getloadavg())}. "vs Pool(1)" = Pool's one-process
wall / Coreboard's wall(p), the speedup a user gets over a plain one-process run; speedup =
Coreboard's own wall(1) / wall(p); efficiency = speedup / p; Karp-Flatt = (1/S - 1/p) / (1 - 1/p), the serial fraction each point implies;
Amdahl = the speedup predicted by the least-squares serial fraction (jobs/scaling.py).

Amdahl fit: Coreboard {fit(ours)}; Pool {fit(theirs)}.

| p | Coreboard wall (s) | vs Pool(1) | speedup | efficiency | Karp-Flatt | Amdahl | Pool wall (s) | Pool speedup | Pool Karp-Flatt | Coreboard / Pool wall | by round |
|---|---|---|---|---|---|---|---|---|---|---|---|
{body}"""


if __name__ == "__main__":
    sys.exit(main())
