"""`make bench`: the execution engine against serial and multiprocessing.Pool, side by side.

Every figure comes from one invocation on one machine, interleaved round by round, and
BENCHMARKS.md gets the medians and the ratios between them:

- coarse: `primes` 0..8·10⁸ in 16 chunks: Coreboard at parallelism 1 on a worker of one
  process against `multiprocessing.Pool(1)`, and at parallelism N (the cores) on the N-process
  worker against `Pool(N)`, with a serial loop for reference, interleaved round by round;
- fine: `burn` jobs of 600 × 1 ms, 120 × 20 ms and 24 × 250 ms at parallelism 2, and
  the same jobs on workers with chunk output capture and process sampling off
  (COREBOARD_CHUNK_CAPTURE=0), in the same rounds;
- big: one `burn` job of 100,000 × 1 ms, with the worker processes' memory before/after;
- fairness: a 1-chunk job of another user submitted while a 40 × 0.5 s job of parallelism
  64 runs.

Coreboard's wall time is the job's own `started_at` → `finished_at` (the first claim to
the last recorded chunk), the definition the job page uses; "submit → finished" adds the
API request and the wait for a free process.

Environment: BENCH_RUNS (default 5), BENCH_BIG_CHUNKS (100000), BENCH_SKIP (comma-separated
section names to leave out: coarse, fine, big, fairness).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil

from tests.benchmarks import burn_twin, harness, primes_twin, report

if TYPE_CHECKING:  # imported where used, once the harness has configured Django
    from jobs.models import Job

COARSE = {"start": 0, "stop": 800_000_000, "chunks": 16}
FINE = ((600, 1), (120, 20), (24, 250), (10_000, 2))
# Efficiency goals at parallelism `cores` (issue 20), and the rows that also run beside a
# capture-off twin (the long row would add minutes for no new figure).
FINE_GOALS = {(600, 1): 0.9, (120, 20): 0.97, (24, 250): 0.99, (10_000, 2): 0.9}
CAPTURE_TWIN_ROWS = {(600, 1), (120, 20), (24, 250)}
FAIR_BIG = {"chunks": 40, "ms": 500}
SECTION_HEADINGS = {
    "coarse": "## Coarse",
    "fine": "## Fine",
    "breakdown": "## Where a chunk's time goes",
    "big": "## Big",
    "fairness": "## Fairness",
}


@contextlib.contextmanager
def _pool(processes: int) -> Iterator[Any]:
    """A fork `multiprocessing.Pool`, ended by close + join rather than terminate: its
    children inherit the harness's SIGTERM handler (sys.exit), and terminate's SIGTERM can
    end one while it holds the task queue's lock, leaving another blocked on it for good."""
    pool = multiprocessing.get_context("fork").Pool(processes)
    try:
        yield pool
    finally:
        pool.close()
        pool.join()


def _run_spec(job: tuple[str, dict[str, Any]]) -> Any:
    from jobs import kinds

    name, spec = job
    return kinds.get(name).run(spec, lambda done, total: None)


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def submit(self, kind: str, params: dict[str, Any], parallelism: int) -> int:
        body = json.dumps({"kind": kind, "params": params, "parallelism": parallelism})
        request = urllib.request.Request(  # noqa: S310 - our loopback daphne
            f"{self.base_url}/api/jobs/",
            data=body.encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310
            return int(json.load(response)["id"])


def _wait(job_id: int, timeout: float = 900) -> Job:
    """A slow poll: it takes no CPU from the workers, unlike following every event."""
    from jobs.models import Job

    deadline = time.monotonic() + timeout
    while (job := Job.objects.get(pk=job_id)).is_active and time.monotonic() < deadline:
        time.sleep(0.2)
    if job.status != Job.Status.SUCCEEDED or job.finished_at is None:
        raise RuntimeError(f"benchmark job {job_id} ended {job.status}: {job.error}")
    return job


def _wall(job: Job) -> float:
    """A finished job's wall time (`_wait` returns only finished jobs)."""
    assert job.wall_seconds is not None, f"job {job.pk} has no wall time"
    return job.wall_seconds


def _coreboard(api: Api, kind: str, params: dict[str, Any], parallelism: int) -> tuple[Job, float]:
    job = _wait(api.submit(kind, params, parallelism))
    return job, _wall(job)


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    value = run()
    return value, time.perf_counter() - began


def _worker_rss(worker_pid: int) -> int:
    main = psutil.Process(worker_pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    big_chunks = int(os.environ.get("BENCH_BIG_CHUNKS", "100000"))
    skip = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
    cores = os.cpu_count() or 1
    sections: list[str] = []
    # Twins of burn (capture off) and primes (one process), which only workers the fine
    # and coarse sections start run: web and this process know them (importing them here
    # registered them), the main worker not.
    twins = (burn_twin, primes_twin)
    extra = [m for m in os.environ.get("COREBOARD_JOB_KINDS", "").split(",") if m]
    os.environ["COREBOARD_JOB_KINDS"] = ",".join([*extra, *(m.__name__ for m in twins)])
    lacks = frozenset(module.NAME for module in twins)
    # Parts this run leaves out keep the earlier run's figures (marked), in their place.
    # The breakdown is measured from the fine rounds: kept with them.
    kept = report.kept_parts(
        "speedup", SECTION_HEADINGS, skip | ({"breakdown"} if "fine" in skip else set())
    )
    with harness.running_stack(workers=cores, worker_lacks=lacks) as stack:
        from django.contrib.auth import get_user_model

        from jobs import kinds
        from tokens.services import token_create

        users = get_user_model().objects
        alice, _ = users.get_or_create(username="bench")
        bob, _ = users.get_or_create(username="bench-bob")
        api = Api(stack.base_url, token_create(user=alice, name="bench", expires_in_days=1).key)
        bob_api = Api(stack.base_url, token_create(user=bob, name="bench", expires_in_days=1).key)
        _coreboard(api, "burn", {"chunks": 4, "ms": 50}, cores)  # warm the workers
        if "fine" not in skip:
            from tests.processes import start_celery_worker

            capture_off = start_celery_worker(
                {
                    **stack.env,
                    "COREBOARD_WORKER_KINDS": burn_twin.NAME,
                    "COREBOARD_CHUNK_CAPTURE": "0",
                },
                concurrency=cores,
            )
            stack.stop_later(capture_off)
            _coreboard(api, burn_twin.NAME, {"chunks": 4, "ms": 50}, cores)
        with _pool(cores) as pool:
            pool.map(_run_spec, [("burn", {"index": 0, "ms": 10, "fail_rate": 0})] * cores)

            def compare(
                kind: str,
                params: dict[str, Any],
                parallelisms: Sequence[int],
                capture_off: str | None = None,
            ) -> dict[str, Any]:
                """`capture_off`: a twin of `kind` that workers with capture off run, at
                parallelism `cores`, beside it in each round (which goes first alternates)."""
                specs = [(kind, s) for s in kinds.get(kind).split(params)]
                times: dict[str, list[float]] = {"serial": [], "pool": []}
                overheads: list[float] = []
                jobs: list[int] = []
                for p in parallelisms:
                    times[f"p{p}"] = []
                if capture_off:
                    times["off"] = []
                for run in range(runs):
                    _, seconds = _timed(lambda: [_run_spec(s) for s in specs])
                    times["serial"].append(seconds)
                    _, seconds = _timed(lambda: pool.map(_run_spec, specs, chunksize=1))
                    times["pool"].append(seconds)
                    if capture_off and run % 2:
                        times["off"].append(_coreboard(api, capture_off, params, cores)[1])
                    for p in parallelisms:
                        job, seconds = _coreboard(api, kind, params, p)
                        times[f"p{p}"].append(seconds)
                        if p == cores:
                            overheads.append(_overhead_per_chunk_ms(job, p))
                            jobs.append(job.pk)
                    if capture_off and not run % 2:
                        times["off"].append(_coreboard(api, capture_off, params, cores)[1])
                    print(
                        f"{kind} {params} run {run + 1}: "
                        + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()),
                        flush=True,
                    )
                medians = {k: statistics.median(v) for k, v in times.items()}
                return {
                    "times": times,
                    "medians": medians,
                    "overhead_ms": overheads,
                    "jobs": jobs,
                    "n": len(specs),
                }

            if "coarse" not in skip:
                coarse = _coarse(api, stack, pool, cores, runs)
                sections.append(_coarse_section(coarse, cores, runs))
            elif "coarse" in kept:
                sections.append(kept["coarse"])
            if "fine" not in skip:
                fine = [
                    (
                        n,
                        ms,
                        compare(
                            "burn",
                            {"chunks": n, "ms": ms, "fail_rate": 0},
                            [cores],
                            capture_off=burn_twin.NAME if (n, ms) in CAPTURE_TWIN_ROWS else None,
                        ),
                    )
                    for n, ms in FINE
                ]
                sections.append(_fine_section(fine, cores, runs))
                assert stack.worker is not None
                sections.append(_breakdown_section(fine, stack.worker.output()))
            elif "fine" in kept:
                sections.extend(kept[part] for part in ("fine", "breakdown") if part in kept)
        if "big" not in skip:
            sections.append(_big_section(api, stack.worker_pid, big_chunks, cores))
        elif "big" in kept:
            sections.append(kept["big"])
        if "fairness" not in skip:
            sections.append(_fairness_section(api, bob_api, cores))
        elif "fairness" in kept:
            sections.append(kept["fairness"])
    report.write_section(
        "speedup",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {harness.machine()}, "
        f"{cores} prefork worker processes.\n\n" + "\n\n".join(sections),
    )
    print("wrote BENCHMARKS.md")
    return 0


def _overhead_per_chunk_ms(job: Job, parallelism: int) -> float:
    """Wall time not spent running chunks, per chunk: (wall × processes − Σ chunk time) / n."""
    busy = sum(
        (c.finished_at - c.started_at).total_seconds()
        for c in job.chunks.only("started_at", "finished_at")
        if c.finished_at and c.started_at
    )
    return (_wall(job) * parallelism - busy) / job.total_chunks * 1000


def _row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {statistics.median(values):.3f} | "
        + ", ".join(f"{v:.3f}" for v in values)
        + " |"
    )


def _run_spec_measured(job: tuple[str, dict[str, Any]]) -> tuple[float, float]:
    """`_run_spec` in a pool child: its wall and CPU seconds (the child runs nothing else)."""
    began, cpu = time.perf_counter(), time.process_time()
    _run_spec(job)
    return time.perf_counter() - began, time.process_time() - cpu


@dataclass(frozen=True)
class Run:
    """One timed run of a setup: its wall, the chunks' CPU seconds, and (Coreboard) the
    time between a process's chunks and around them, per chunk."""

    wall: float
    cpu: float
    between_ms: float = 0.0
    around_ms: float = 0.0


def _coreboard_run(api: Api, kind: str, params: dict[str, Any], parallelism: int) -> Run:
    job, wall = _coreboard(api, kind, params, parallelism)
    spans: dict[tuple[str, int | None], list[tuple[datetime, datetime]]] = {}
    cpu = 0.0
    for chunk in job.chunks.only("worker", "pid", "started_at", "finished_at", "cpu_seconds"):
        assert chunk.started_at is not None
        assert chunk.finished_at is not None
        spans.setdefault((chunk.worker, chunk.pid), []).append(
            (chunk.started_at, chunk.finished_at)
        )
        cpu += chunk.cpu_seconds or 0.0
    between = sum(
        (later[0] - earlier[1]).total_seconds()
        for own in spans.values()
        for earlier, later in itertools.pairwise(sorted(own))
    )
    assert job.started_at is not None
    assert job.finished_at is not None
    # Before the first chunk (the first claim) and after the last (its record, combine):
    # the job's wall that no chunk spans.
    first = min(started for own in spans.values() for started, _ in own)
    last = max(finished for own in spans.values() for _, finished in own)
    around = (first - job.started_at).total_seconds() + (job.finished_at - last).total_seconds()
    chunks = sum(len(own) for own in spans.values())
    return Run(wall, cpu, between / chunks * 1000, around * 1000)


def _pool_run(pool: Any, specs: list[tuple[str, dict[str, Any]]]) -> Run:
    measured, wall = _timed(lambda: pool.map(_run_spec_measured, specs, chunksize=1))
    return Run(wall, sum(cpu for _, cpu in measured))


def _coarse(
    api: Api, stack: harness.Stack, pool: Any, cores: int, runs: int
) -> dict[str, list[Run]]:
    """Coreboard at parallelism 1 on a worker of exactly one process (it runs only the
    primes twin, so nothing else lands on it and its job on nothing else) against Pool(1),
    and at parallelism `cores` on the stack's worker against Pool(`cores`), with a serial
    loop for reference; each round runs every setup, each pair in alternating order.

    The one-process worker lives only for its pair of each round: idle, it would still
    beat and reconcile on the cores that the parallelism-`cores` pair fills."""
    from jobs import kinds
    from tests.processes import start_celery_worker

    specs = [("primes", spec) for spec in kinds.get("primes").split(COARSE)]
    runs_of: dict[str, list[Run]] = {"serial": [], "pool 1": [], "p1": [], "pool": [], "p": []}

    def one_process_pair(run: int) -> None:
        one = start_celery_worker(
            {**stack.env, "COREBOARD_WORKER_KINDS": primes_twin.NAME}, concurrency=1
        )
        try:
            _coreboard(api, primes_twin.NAME, {"start": 0, "stop": 10**6, "chunks": 2}, 1)
            pair: list[tuple[str, Callable[[], Run]]] = [
                ("pool 1", lambda: _pool_run(pool_1, specs)),
                ("p1", lambda: _coreboard_run(api, primes_twin.NAME, COARSE, 1)),
            ]
            for name, measure in pair if run % 2 == 0 else reversed(pair):
                runs_of[name].append(measure())
        finally:
            one.stop()

    with _pool(1) as pool_1:
        pool_1.map(_run_spec, specs[:1])
        for run in range(runs):
            began = time.process_time()
            _, seconds = _timed(lambda: [_run_spec(spec) for spec in specs])
            runs_of["serial"].append(Run(seconds, time.process_time() - began))
            one_process_pair(run)
            pair: list[tuple[str, Callable[[], Run]]] = [
                ("pool", lambda: _pool_run(pool, specs)),
                ("p", lambda: _coreboard_run(api, "primes", COARSE, cores)),
            ]
            for name, measure in pair if run % 2 == 0 else reversed(pair):
                runs_of[name].append(measure())
            print(
                f"coarse run {run + 1} (load {os.getloadavg()[0]:.1f}): "
                + ", ".join(f"{k} {v[-1].wall:.3f} s" for k, v in runs_of.items()),
                flush=True,
            )
    return runs_of


def _ratios(runs: list[Run], pool: list[Run], of: Callable[[Run], float]) -> list[float]:
    return [of(mine) / of(theirs) for mine, theirs in zip(runs, pool, strict=True)]


def _coarse_section(result: dict[str, list[Run]], cores: int, runs: int) -> str:
    def median(name: str, of: Callable[[Run], float] = lambda run: run.wall) -> float:
        return statistics.median(of(run) for run in result[name])

    rows = {
        "serial, one process": "serial",
        "multiprocessing.Pool(1)": "pool 1",
        "Coreboard, parallelism 1, a worker of 1 process": "p1",
        f"multiprocessing.Pool({cores})": "pool",
        f"Coreboard, parallelism {cores}, a worker of {cores} processes": "p",
    }
    table = "\n".join(_row(label, [run.wall for run in result[key]]) for label, key in rows.items())

    def ratio_row(label: str, of: Callable[[Run], float], digits: int, goal: str) -> str:
        cells = []
        for mine, theirs in (("p1", "pool 1"), ("p", "pool")):
            ratios = _ratios(result[mine], result[theirs], of)
            cells.append(
                f"**{statistics.median(ratios):.{digits}f}** ("
                + ", ".join(f"{r:.{digits}f}" for r in ratios)
                + ")"
            )
        return f"| {label} | {cells[0]} | {cells[1]} | {goal} |"

    def ms(name: str, of: Callable[[Run], float]) -> str:
        return f"{median(name, of):.1f}"

    load = os.getloadavg()
    return f"""## Coarse: primes 0..8·10⁸ in 16 chunks

`primes {json.dumps(COARSE)}`; {runs} rounds, each running every setup (Pool and Coreboard
of one size back to back, which goes first alternating). Coreboard at parallelism 1 runs on
a worker of exactly one process, which runs nothing else and is started for that pair of
each round; at parallelism {cores} on the {cores}-process worker. Times in seconds; Coreboard's is the job's started → finished, Pool's
the `map(chunksize=1)` call. Load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.

| setup | median | all runs |
|---|---|---|
{table}

Ratios are taken round by round (each Coreboard run over the Pool run beside it), then
the median; a round's own figures in brackets.

| figure | parallelism 1 (vs Pool(1)) | parallelism {cores} (vs Pool({cores})) | goal |
|---|---|---|---|
{ratio_row("Coreboard wall / Pool wall", lambda run: run.wall, 3, "≤ 1.02")}
{ratio_row("chunks' CPU time, Coreboard / Pool", lambda run: run.cpu, 3, "(where it went)")}
| between a process's chunks, per chunk (ms) | {ms("p1", lambda run: run.between_ms)} | {ms("p", lambda run: run.between_ms)} | |
| before the first and after the last chunk (ms) | {ms("p1", lambda run: run.around_ms)} | {ms("p", lambda run: run.around_ms)} | |
| speedup of {cores} processes over 1 | Coreboard {median("p1") / median("p"):.2f}× | Pool {median("pool 1") / median("pool"):.2f}× | |

Where a one-process gap comes from (docs/decisions.md, issue 20): not the chunks' code (the
same symbols in the same shares under `perf` in a Pool child and a prefork child), but the
time between chunks (a claim and a record per coarse chunk) and what else wakes in the
chunk's process and takes its GIL (the chunks' CPU row counts those threads too). The
process sampler now runs in the worker's main process. On a shared machine the load moves
single rounds by tens of percent either way: read the medians, and the load above."""


def _fine_section(rows: list[tuple[int, int, dict[str, Any]]], cores: int, runs: int) -> str:
    lines = []
    capture: list[str] = []
    for n, ms, result in rows:
        m = result["medians"]
        ideal = n * ms / 1000 / cores
        pool_ratio = m[f"p{cores}"] / m["pool"]
        goal = f"≥ {FINE_GOALS[(n, ms)]}" + (" and ≥ Pool's" if (n, ms) == (600, 1) else "")
        lines.append(
            f"| {n:,} × {ms} ms | {m['serial']:.3f} | {m['pool']:.3f} | {m[f'p{cores}']:.3f} | "
            f"{ideal / m['pool']:.2f} | **{ideal / m[f'p{cores}']:.2f}** ({goal}) | "
            f"{pool_ratio:.3f} | {statistics.median(result['overhead_ms']):.2f} |"
        )
        if "off" not in m:
            continue
        capture.append(
            f"| {n:,} × {ms} ms | {m[f'p{cores}']:.3f} | {m['off']:.3f} | "
            f"**{m[f'p{cores}'] / m['off']:.3f}** | "
            + ", ".join(
                f"{on / off:.3f}"
                for on, off in zip(
                    result["times"][f"p{cores}"], result["times"]["off"], strict=True
                )
            )
            + " |"
        )
    body = "\n".join(lines)
    capture_rows = "\n".join(capture)
    return f"""## Fine: `burn` chunks at parallelism {cores}

{runs} rounds each, every setup back to back in each round; medians. Efficiency = ideal wall
(chunks × ms / {cores}) / measured wall; Pool runs the same chunks with `map(chunksize=1)`.
Overhead per chunk = (wall × {cores} − Σ chunk run time) / chunks: what the chunks' processes
spent on anything but the chunks, amortised.

| job | serial (s) | Pool (s) | Coreboard (s) | Pool efficiency | Coreboard efficiency | Coreboard / Pool wall | overhead per chunk (ms) |
|---|---|---|---|---|---|---|---|
{body}

The same jobs, in the same rounds, on {cores} worker processes with chunk output capture
and process sampling off (COREBOARD_CHUNK_CAPTURE=0; a twin of `burn` that only they run).
Capture on is the default: stdout/stderr/log redirection, per-chunk peak memory and CPU,
one sample a second per busy process.

| job | capture on (s) | capture off (s) | on / off (median) | on / off by round |
|---|---|---|---|---|
{capture_rows}"""


def _slot_figures(output: str) -> dict[int, dict[str, float]]:
    """The worker's `slot figures` lines (jobs.engine.slots.SLOT_FIGURES), summed per job."""
    from jobs.engine.slots import SLOT_FIGURES

    per_job: dict[int, dict[str, float]] = {}
    for line in output.splitlines():
        if SLOT_FIGURES not in line:
            continue
        figures = json.loads(line.split(SLOT_FIGURES, 1)[1])
        job = per_job.setdefault(figures.pop("job_id"), {})
        figures.pop("ended")
        for name, value in figures.items():
            job[name] = job.get(name, 0) + value
    return per_job


def _breakdown_section(rows: list[tuple[int, int, dict[str, Any]]], output: str) -> str:
    per_job = _slot_figures(output)
    lines = []
    for n, ms, result in rows:
        measured = [per_job[job] for job in result["jobs"] if job in per_job]
        if not measured:
            continue
        total = {name: sum(f[name] for f in measured) for name in measured[0]}
        chunks = total["chunks"]
        around = total["loop_s"] - total["run_s"] - total["waited_s"]
        claims = max(total["claims"], 1)
        records = max(total["records"], 1)
        lines.append(
            f"| {n:,} × {ms} ms | {total['run_s'] / chunks * 1000:.3f} | "
            f"{around / chunks * 1e6:.0f} | {total['waits'] / len(measured):.1f} | "
            f"{total['waited_s'] / chunks * 1e6:.0f} | {chunks / claims:.1f} | "
            f"{total['claim_s'] / claims * 1000:.2f} | {total['record_s'] / records * 1000:.2f} |"
        )
    body = "\n".join(lines)
    return f"""## Where a chunk's time goes

From the Coreboard jobs of the rounds above, as each slot logged them (`slot figures`,
jobs.engine.bookkeeping.BatchFigures), summed over the job's slots. A process's main
thread runs the chunks; claims and records happen beside them in its bookkeeping thread,
so their time shows in the chunks' wall only as CPU they take from the chunk (the
GIL, and PostgreSQL's and Redis's share of the cores), and as waits when a claim is late.
Live events are handed to the publisher thread in memory at each chunk's end ("around").

| job | run (ms per chunk) | around each chunk (µs per chunk) | main thread waited for a claim (times per job) | waiting (µs per chunk) | chunks per claim | claim + record (ms each) | record alone (ms each) |
|---|---|---|---|---|---|---|---|
{body}"""


def _big_section(api: Api, worker_pid: int, chunks: int, cores: int) -> str:
    before = _worker_rss(worker_pid)
    job = _wait(api.submit("burn", {"chunks": chunks, "ms": 1, "fail_rate": 0}, cores), 1800)
    after = _worker_rss(worker_pid)
    wall = _wall(job)
    ideal = chunks / 1000 / cores
    print(f"big: {wall:.1f} s for {chunks} chunks", flush=True)
    return f"""## Big: one job of {chunks:,} × 1 ms

| figure | value | goal |
|---|---|---|
| wall (started → finished) | {wall:.1f} s (ideal {ideal:.1f} s) | |
| efficiency | **{ideal / wall:.2f}** | ≥ 0.9 |
| overhead per chunk | {_overhead_per_chunk_ms(job, cores):.3f} ms | |
| worker RSS (main + children) before → after | {before / 2**20:.1f} → {after / 2**20:.1f} MiB ({(after - before) / before * 100:+.1f} %) | within ±10 % |"""


def _fairness_section(api: Api, bob_api: Api, cores: int) -> str:
    from jobs.models import Job

    big = api.submit("burn", {**FAIR_BIG, "fail_rate": 0}, 64)
    while not Job.objects.get(pk=big).started_at:
        time.sleep(0.05)
    time.sleep(1.0)
    sent = datetime.now(UTC)
    small = _wait(bob_api.submit("burn", {"chunks": 1, "ms": 100, "fail_rate": 0}, 1))
    started = small.chunks.get().started_at
    assert started is not None
    waited = (started - sent).total_seconds()
    big_job = _wait(big)
    print(f"fairness: the small job started {waited:.2f} s after submission", flush=True)
    return f"""## Fairness

While one user's job of {FAIR_BIG["chunks"]} × {FAIR_BIG["ms"]} ms with parallelism 64 ran
(it took {big_job.wall_seconds:.1f} s), another user submitted a 1-chunk job one second after it
started.

| figure | value | goal |
|---|---|---|
| submit → the small job's chunk started | **{waited:.2f} s** | ≤ 1.5 s (before: ~10 s) |"""


if __name__ == "__main__":
    sys.exit(main())
