"""History at 100,000 jobs: list pages, deep pages, filters, search, CSV export, compare.

Starts its own PostgreSQL (var/bench-history/pg, a free port; never DATABASE_URL, since it
fills the database with 100,000 made-up jobs), inserts the jobs for a few people, and
times whole requests through Django's test client (middleware, session, queries,
template) as a person with many jobs and as staff, who sees all of them. BENCHMARKS.md
gets the medians.

Run: `.venv/bin/python -m tests.benchmarks.history` (also part of `make bench`).
Environment: BENCH_HISTORY_JOBS (default 100000), BENCH_HISTORY_RUNS (7).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from coreconf import paths
from launcher import stack
from tests.benchmarks import harness, report

BENCH_VAR = paths.VAR_DIR / "bench-history"
# Share of all jobs per person; staff own none but see every one.
OWNERS = {"bench-alice": 0.6, "bench-bob": 0.25, "bench-carol": 0.15}
STAFF = "bench-staff"
STATUSES = [("succeeded", 85), ("failed", 7), ("cancelled", 5), ("running", 2), ("pending", 1)]


def _params(kind: str, rng: random.Random) -> dict[str, Any]:
    chunks = rng.choice([4, 8, 16, 32])
    if kind == "primes":
        return {"start": 0, "stop": rng.choice([10**6, 10**7, 5 * 10**7, 10**8]), "chunks": chunks}
    if kind == "burn":
        return {"chunks": chunks, "ms": rng.choice([100, 500, 1500]), "fail_rate": 0.0}
    if kind == "montecarlo_pi":
        return {"samples": rng.choice([10**6, 10**7, 10**8]), "chunks": chunks, "seed": 7}
    return {
        "width": rng.choice([640, 1280]),
        "height": rng.choice([480, 960]),
        "max_iter": rng.choice([256, 1000]),
        "x_min": -2.5,
        "x_max": 1.0,
        "y_min": -1.25,
        "y_max": 1.25,
        "chunks": chunks,
    }


def _fill(count: int) -> dict[str, Any]:
    """Replace every job with `count` made-up ones; the people, by username."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from jobs.models import Job

    users = {}
    for name in [*OWNERS, STAFF]:
        user, _ = get_user_model().objects.get_or_create(
            username=name, defaults={"is_staff": name == STAFF}
        )
        users[name] = user
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_chunk, jobs_job RESTART IDENTITY CASCADE")
    rng = random.Random(1)
    kinds = ["primes", "burn", "montecarlo_pi", "mandelbrot"]
    statuses, weights = zip(*STATUSES, strict=True)
    owners, shares = zip(*OWNERS.items(), strict=True)
    now = datetime.now(UTC)
    created_field = Job._meta.get_field("created_at")
    # auto_now_add would stamp every row with the same instant; a year of history is wanted.
    created_field.auto_now_add = False
    try:
        batch: list[Job] = []
        for n in range(count):
            kind = rng.choice(kinds)
            status = rng.choices(statuses, weights)[0]
            parallelism = rng.choice([2, 4, 8, 16])
            created = now - timedelta(days=365) * (1 - n / count)
            started = finished = None
            cpu = 0.0
            if status != "pending" and not (status == "cancelled" and rng.random() < 0.5):
                started = created + timedelta(seconds=rng.uniform(0.05, 3))
            if started and status != "running":
                seconds = rng.lognormvariate(2, 1)
                finished = started + timedelta(seconds=seconds)
                cpu = seconds * parallelism * rng.uniform(0.6, 0.97)
            params = _params(kind, rng)
            batch.append(
                Job(
                    owner=users[rng.choices(owners, shares)[0]],
                    kind=kind,
                    params=params,
                    status=status,
                    parallelism=parallelism,
                    total_chunks=params["chunks"],
                    done_chunks=params["chunks"] if status == "succeeded" else 0,
                    created_at=created,
                    started_at=started,
                    finished_at=finished,
                    cpu_seconds=cpu,
                )
            )
            if len(batch) == 5000:
                Job.objects.bulk_create(batch)
                batch.clear()
        Job.objects.bulk_create(batch)
    finally:
        created_field.auto_now_add = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE jobs_job")
    return users


# Eight people export every job at once while another person pages through their history.
EXPORTERS = 8
EXPORT_PAGE_RUNS_MIN = 20


def _parallel_exports(users: dict[str, Any], base_url: str, reader: str) -> dict[str, Any]:
    """Through a real daphne: `reader`'s first page alone (median of 20), then while
    EXPORTERS staff members each stream the whole history as CSV at once, `reader`'s first
    page again and again until the last export has ended."""
    import httpx
    from django.contrib.auth import get_user_model
    from django.test import Client

    def cookie(user: Any) -> dict[str, str]:
        client = Client()
        client.force_login(user)
        return {"sessionid": client.cookies["sessionid"].value}

    exporters = [
        get_user_model().objects.get_or_create(
            username=f"bench-export-{n}", defaults={"is_staff": True}
        )[0]
        for n in range(1, EXPORTERS + 1)
    ]

    def page_times(client: httpx.Client, until: Callable[[], bool], least: int) -> list[float]:
        times: list[float] = []
        while len(times) < least or not until():
            began = time.perf_counter()
            response = client.get("/history/")
            assert response.status_code == 200, response.status_code
            times.append((time.perf_counter() - began) * 1000)
        return times

    results: list[tuple[int, float]] = []
    started = threading.Barrier(EXPORTERS + 1)

    def export(user: Any) -> None:
        with httpx.Client(base_url=base_url, cookies=cookie(user), timeout=300) as client:
            started.wait()
            began = time.perf_counter()
            with client.stream("GET", "/history/export.csv") as response:
                assert response.status_code == 200, response.status_code
                lines = sum(piece.count(b"\n") for piece in response.iter_bytes())
            results.append((lines - 1, time.perf_counter() - began))

    with httpx.Client(base_url=base_url, cookies=cookie(users[reader]), timeout=60) as client:
        page_times(client, lambda: True, 5)  # warm up
        alone = page_times(client, lambda: True, EXPORT_PAGE_RUNS_MIN)
        threads = [threading.Thread(target=export, args=(user,)) for user in exporters]
        for thread in threads:
            thread.start()
        started.wait()
        began = time.perf_counter()
        during = page_times(
            client, lambda: not any(t.is_alive() for t in threads), EXPORT_PAGE_RUNS_MIN
        )
        wall = time.perf_counter() - began
        for thread in threads:
            thread.join()
    assert len(results) == EXPORTERS, "an export failed"
    return {"alone": alone, "during": during, "exports": results, "wall": wall}


def _p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]


def _median_ms(runs: int, call: Callable[[], Any]) -> tuple[float, list[float], Any]:
    result = call()  # warm caches and connections, like a server that has been up a while
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), times, result


def main() -> int:
    count = int(os.environ.get("BENCH_HISTORY_JOBS", "100000"))
    runs = int(os.environ.get("BENCH_HISTORY_RUNS", "7"))
    stops = stack.start_private_services(BENCH_VAR, secret_name="bench-history-pg-password").stops()
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.http import StreamingHttpResponse
        from django.test import Client

        from jobs.selectors import jobs as selectors

        call_command("migrate", "--noinput", verbosity=0)
        began = time.perf_counter()
        users = _fill(count)
        fill_seconds = time.perf_counter() - began
        print(f"inserted {count} jobs in {fill_seconds:.1f} s", flush=True)

        def client_for(name: str) -> Client:
            client = Client(SERVER_NAME="localhost")
            client.force_login(users[name])
            return client

        def page(client: Client, query: dict[str, str]) -> Callable[[], int]:
            def get() -> int:
                response = client.get("/history/", query)
                assert response.status_code == 200, response.status_code
                return response.content.count(b"<tr data-job-id=")

            return get

        def export(client: Client, query: dict[str, str]) -> Callable[[], int]:
            def get() -> int:
                response = client.get("/history/export.csv", query)
                assert isinstance(response, StreamingHttpResponse)
                return sum(piece.count(b"\n") for piece in response.streaming_content) - 1

            return get

        def compare(client: Client, kind: str) -> Callable[[], int]:
            def get() -> int:
                response = client.get("/history/compare/", {"kind": kind})
                assert response.status_code == 200, response.status_code
                return response.content.count(b"<tr data-job-id=")

            return get

        owner = max(OWNERS, key=OWNERS.__getitem__)
        person, staff = client_for(owner), client_for(STAFF)
        some_id = str(selectors.jobs_visible_to(users[owner]).order_by("id")[count // 4].pk)
        filtered = {"status": "succeeded", "kind": "primes", "sort": "-speedup"}
        dated = {
            "kind": "mandelbrot",
            "created_from": f"{datetime.now(UTC) - timedelta(days=90):%Y-%m-%d}",
            "sort": "-duration",
        }
        scenarios: list[tuple[str, str, Callable[[], int]]] = [
            ("first page", owner, page(person, {})),
            ("deep page (2000)", owner, page(person, {"page": "2000"})),
            ("status + kind, by speedup", owner, page(person, filtered)),
            ("search parameter text", owner, page(person, {"q": '"stop": 10000000'})),
            ("search label and value", owner, page(person, {"q": "Stop 10000000"})),
            ("search id", owner, page(person, {"q": some_id})),
            ("compare primes (last 500)", owner, compare(person, "primes")),
            ("first page", STAFF, page(staff, {})),
            ("deep page (2000)", STAFF, page(staff, {"page": "2000"})),
            ("status + kind, by speedup", STAFF, page(staff, filtered)),
            ("kind + 90 days, by duration", STAFF, page(staff, dated)),
            ("search parameter text", STAFF, page(staff, {"q": '"stop": 10000000'})),
            ("compare primes (last 500)", STAFF, compare(staff, "primes")),
        ]
        rows = []
        for name, who, call in scenarios:
            median, times, shown = _median_ms(runs, call)
            rows.append((name, who, shown, median, times))
            print(f"{who:12} {name:32} {median:8.1f} ms ({shown} rows)", flush=True)
        exports = []
        for who, client in ((owner, person), (STAFF, staff)):
            for query in ({}, filtered):
                median, times, lines = _median_ms(max(3, runs // 2), export(client, query))
                exports.append((who, query, lines, median, times))
                print(f"{who:12} CSV {query!s:40} {median:8.1f} ms ({lines} rows)", flush=True)
        counts = []
        for who in (owner, STAFF):
            median, _, matched = _median_ms(runs, selectors.job_history(user=users[who]).count)
            counts.append((who, matched, median))
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg_version = cursor.fetchone()[0]
        from tests.processes import start_daphne

        daphne, base_url = start_daphne(dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            parallel = _parallel_exports(users, base_url, reader="bench-bob")
        finally:
            daphne.stop()
        print(
            f"bench-bob first page through daphne: alone {statistics.median(parallel['alone']):.1f} ms, "
            f"during {EXPORTERS} exports {statistics.median(parallel['during']):.1f} ms",
            flush=True,
        )
        _write_report(count, runs, fill_seconds, pg_version, rows, exports, counts, parallel)
        return 0
    finally:
        for stop in reversed(stops):
            stop()


def _write_report(
    count: int,
    runs: int,
    fill_seconds: float,
    pg_version: str,
    rows: list[tuple[str, str, int, float, list[float]]],
    exports: list[tuple[str, dict[str, str], int, float, list[float]]],
    counts: list[tuple[str, int, float]],
    parallel: dict[str, Any],
) -> None:
    alone, during = parallel["alone"], parallel["during"]
    export_walls = sorted(seconds for _, seconds in parallel["exports"])
    export_lines = {lines for lines, _ in parallel["exports"]}
    shares = ", ".join(f"{name} {share:.0%}" for name, share in OWNERS.items())
    page_rows = "\n".join(
        f"| {name} | {who} | {shown} | **{median:.1f}** | {', '.join(f'{t:.1f}' for t in times)} |"
        for name, who, shown, median, times in rows
    )
    export_rows = "\n".join(
        f"| {who} | {' '.join(f'{k}={v}' for k, v in query.items()) or '(none)'} | {lines} "
        f"| **{median:.0f}** | {lines / median * 1000:,.0f} |"
        for who, query, lines, median, _ in exports
    )
    count_rows = "\n".join(
        f"| {who} | {matched} | {median:.1f} |" for who, matched, median in counts
    )
    report.write_section(
        "history",
        f"""## History at {count:,} jobs

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {harness.machine()},
PostgreSQL {pg_version.split()[0]}, load average {os.getloadavg()[0]:.1f} at the end (a
shared machine's other work slows every figure alike: compare with "search id", a
one-row page).
`tests/benchmarks/history.py` inserts {count:,} jobs ({shares} of them; `{STAFF}` is staff
and sees all) spread over a year, in {fill_seconds:.0f} s, then times whole requests through
Django's test client (session, middleware, queries, template): one warm-up, then the median
of {runs} runs. Pages hold 25 rows and say how many jobs matched: Django's paginator
counts them (COUNT(*); its cost is below), a text search up to 1,000 matches ("more than
1,000 jobs match"). A page looks up its 25 ids first, an index-only scan of
`(owner, created_at, id)` or `(created_at, id)` for the default order, then loads just
those rows, so a deep page costs little more than the first. A text search reads the
trigram indexes of the kind and the parameters' JSON text (pg_trgm), then rechecks the
rows they point to. Duration and speedup are stored columns of a job (null until it
finishes), with an index per order: a page sorted by either walks one and checks the
filters on the rows it meets, and the count of a kind and status filter reads the
`(kind, status, owner)` index alone.

| page | as | rows shown | median ms | all runs (ms) |
|---|---|---|---|---|
{page_rows}

The COUNT(*) behind the page count, alone:

| as | jobs counted | median ms |
|---|---|---|
{count_rows}

CSV export (every matching job, written by PostgreSQL's COPY and streamed; median of
{max(3, runs // 2)} runs):

| as | filters | rows | median ms | rows/s |
|---|---|---|---|---|
{export_rows}

{EXPORTERS} exports at once, through a real daphne: {EXPORTERS} staff members each stream
all {", ".join(f"{n:,}" for n in sorted(export_lines))} rows at the same moment while
bench-bob loads his first page again and again until the last export ends
({len(during)} pages in {parallel["wall"]:.1f} s); before, the same page alone
({len(alone)} loads after 5 to warm up):

| bench-bob's first page | median ms | p95 ms | max ms |
|---|---|---|---|
| alone | **{statistics.median(alone):.1f}** | {_p95(alone):.1f} | {max(alone):.1f} |
| during {EXPORTERS} exports | **{statistics.median(during):.1f}** | {_p95(during):.1f} | {max(during):.1f} |

Each export took {export_walls[0]:.1f} to {export_walls[-1]:.1f} s (median
{statistics.median(export_walls):.1f} s).
""",
    )
    print("wrote the history section of BENCHMARKS.md")


if __name__ == "__main__":
    sys.exit(main())
