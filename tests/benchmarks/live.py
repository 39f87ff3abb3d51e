"""`make bench`, live latency with every core computing (issue 20, item 4).

Twenty people each submit a `burn` job of 40 × 40 ms chunks, all twenty in one go, on the
bench's worker (one process per core, so every core computes until the last chunk). The
team watches as it would:

- each job's page is open five times: its owner's and four colleagues' (staff members,
  who may see every job; an ordinary member sees only their own): 100 job sockets, each a
  real websocket client of the real daphne with its own login session;
- each owner also keeps the overview open (20 more sockets, one push a second each);
- meanwhile another person loads pages, a steady trickle (the overview, then their own
  job's page, one request every PAGE_EVERY_S, one at a time).

Figures: for every viewer and every chunk, its `finished_at` (written by the worker;
the clocks are this machine's) to the moment the viewer received the delta that says it is
done (p50, p95, p99 over all pairs, and per chunk until its last viewer had it); the page
requests' times; and what watching costs the jobs: the twenty jobs' wall (first start to
last finish) against the same jobs with nobody watching. Each runs with chunk processes
at the default COREBOARD_CHUNK_NICE and at 0 (`burn_nice_0` on a second worker of the
same size whose processes keep the worker's priority), the four setups interleaved round
by round, rotating which goes first.

The clients run in this process (one event loop), on the same cores as everything else,
as a browser on the same machine would. Environment: BENCH_LIVE_ROUNDS (default 3),
BENCH_LIVE_ONLY (run only the setups whose name holds it, e.g. "watched" or "nice 0", and
leave BENCHMARKS.md alone: for looking into one).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.benchmarks import burn_nice, harness, report

JOBS = 20
CHUNKS = 40
CHUNK_MS = 40
VIEWERS_PER_JOB = 5
PAGE_EVERY_S = 0.25
GOALS = {"p50": 0.050, "p99": 0.250, "page_p95": 0.100}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Watch:
    """What the sockets saw: each viewer's first receipt of each chunk's end."""

    # (job, index) → the delays (s) of the viewers that received it done.
    delays: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    measuring: bool = False
    opened: int = 0
    messages: int = 0
    # Snapshots sent after the first (resyncs: a gap, or a socket that fell behind).
    resyncs: int = 0


async def _viewer(url: str, origin: str, cookie: str, watch: Watch, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    seen: set[tuple[int, int]] = set()
    job_id = int(url.rstrip("/").split("/")[-1]) if "/ws/jobs/" in url else 0
    async with connect(
        url,
        origin=Origin(origin),
        additional_headers={"Cookie": cookie},
        max_size=None,
        open_timeout=60,
    ) as ws:
        first = True
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            received = time.time()
            if first:
                watch.opened += 1
                first = False
            watch.messages += 1
            if not watch.measuring:
                continue
            if '"job.snapshot"' in str(raw):
                watch.resyncs += 1
            if '"job.progress"' not in str(raw):
                continue
            message = json.loads(raw)
            if message.get("type") != "job.progress":
                continue
            for chunk in message["chunks"]:
                key = (job_id, chunk["index"])
                if chunk.get("status") == "done" and chunk.get("finished_at") and key not in seen:
                    seen.add(key)
                    delay = received - _timestamp(chunk["finished_at"])
                    watch.delays.setdefault(key, []).append(delay)


class Sockets(threading.Thread):
    """Every viewer's socket, in one event loop of its own."""

    def __init__(self, targets: list[tuple[str, str]], origin: str) -> None:
        super().__init__(daemon=True)
        self.targets = targets  # (url, cookie)
        self.origin = origin
        self.watch = Watch()
        self.errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._started.set()
        results = await asyncio.gather(
            *(
                _viewer(url, self.origin, cookie, self.watch, self._stop_event)
                for url, cookie in self.targets
            ),
            return_exceptions=True,
        )
        self.errors = [r for r in results if isinstance(r, BaseException)]

    def wait_open(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.watch.opened < len(self.targets):
            if time.monotonic() > deadline or not self.is_alive():
                raise RuntimeError(f"only {self.watch.opened} sockets opened: {self.errors}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._started.wait(5)
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self.join(timeout=30)


class Published(threading.Thread):
    """A listener on every job's channel-layer group, as a socket's consumer is, but with
    nothing of daphne between: when each chunk's end was published (the engine's share of
    the latency; the rest is daphne's and the sockets')."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(daemon=True)
        self.ids = ids
        self.delays: dict[tuple[int, int], float] = {}
        self.measuring = False
        self.ready = threading.Event()
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._listen())
        except BaseException:
            traceback.print_exc()
            raise

    async def _listen(self) -> None:
        from channels import DEFAULT_CHANNEL_LAYER
        from channels.layers import channel_layers

        from jobs.engine import events

        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel()
        for job_id in self.ids:
            await layer.group_add(events.job_group(job_id), channel)
        self.ready.set()
        try:
            while not self.ended.is_set():
                try:
                    async with asyncio.timeout(0.2):
                        event = await layer.receive(channel)
                except TimeoutError:
                    continue
                received = time.time()
                if event.get("type") != "job.changed" or not self.measuring:
                    continue
                job_id = int(event["job_id"])
                for chunk in event["chunks"]:
                    if chunk.get("status") == "done" and chunk.get("finished_at"):
                        key = (job_id, chunk["index"])
                        delay = received - _timestamp(chunk["finished_at"])
                        self.delays.setdefault(key, delay)
        finally:
            for job_id in self.ids:
                await layer.group_discard(events.job_group(job_id), channel)
            await layer.close_pools()


class PageTrickle(threading.Thread):
    """One logged-in person loading pages one after another, every PAGE_EVERY_S."""

    def __init__(self, urls: list[str], cookie: str) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.cookie = cookie
        self.times: list[float] = []
        self.failures = 0
        self.ended = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self.ended.is_set():
            url = self.urls[turn % len(self.urls)]
            turn += 1
            began = time.perf_counter()
            request = urllib.request.Request(url, headers={"Cookie": self.cookie})  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    response.read()
                self.times.append(time.perf_counter() - began)
            except OSError:
                self.failures += 1
            self.ended.wait(max(0.0, PAGE_EVERY_S - (time.perf_counter() - began)))


@dataclass
class People:
    owners: list[Any]
    staff: list[Any]
    visitor: Any
    cookies: dict[int, str]
    visitor_job: int


def _people() -> People:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from jobs import services

    users = get_user_model().objects

    def user(name: str, *, staff: bool = False) -> Any:
        person, _ = users.get_or_create(username=name, defaults={"is_staff": staff})
        return person

    owners = [user(f"bench-live-owner-{i}") for i in range(JOBS)]
    staff = [user(f"bench-live-staff-{i}", staff=True) for i in range(JOBS * 4)]
    visitor = user("bench-live-visitor")
    cookies = {}
    for person in [*owners, *staff, visitor]:
        client = Client()
        client.force_login(person)
        cookies[person.pk] = f"sessionid={client.cookies['sessionid'].value}"
    ended = services.job_create(owner=visitor, kind="burn", params={"chunks": 3, "ms": 1})
    services.job_cancel(job=ended)
    return People(owners, staff, visitor, cookies, ended.pk)


def _submit(people: People, kind: str, chunks: int = CHUNKS) -> list[int]:
    from django.db import transaction

    from jobs import services

    with transaction.atomic():  # dispatched together, at commit
        return [
            services.job_create(
                owner=owner, kind=kind, params={"chunks": chunks, "ms": CHUNK_MS, "fail_rate": 0}
            ).pk
            for owner in people.owners
        ]


def _wait_all(ids: list[int], timeout: float = 600) -> list[Any]:
    from jobs.models import Job

    deadline = time.monotonic() + timeout
    while Job.objects.filter(pk__in=ids, status__in=Job.ACTIVE_STATUSES).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the live bench's jobs did not finish")
        time.sleep(0.25)
    jobs = list(Job.objects.filter(pk__in=ids))
    for job in jobs:
        if job.status != Job.Status.SUCCEEDED:
            raise RuntimeError(f"bench job {job.pk} ended {job.status}: {job.error}")
    return jobs


def _workers_pause(*, paused: bool) -> None:
    """Drain every worker node (or make them take work again): the jobs wait, submitted,
    while their viewers open their pages, and then start together."""
    from jobs.engine import workers
    from jobs.services import nodes

    for node in workers.cluster_state()["nodes"]:
        if not node["lost"]:
            nodes.node_drain(node=node["node"], draining=paused)


def _run(base_url: str, people: People, kind: str, *, watched: bool) -> dict[str, Any]:
    _workers_pause(paused=True)
    ids = _submit(people, kind)
    sockets: Sockets | None = None
    pages: PageTrickle | None = None
    published: Published | None = None
    if watched:
        published = Published(ids)
        published.start()
        published.ready.wait(10)
        ws_base = base_url.replace("http://", "ws://")
        targets = []
        for n, job_id in enumerate(ids):
            owner = people.owners[n]
            viewers = [owner, *people.staff[n * 4 : n * 4 + 4]]
            targets += [(f"{ws_base}/ws/jobs/{job_id}/", people.cookies[v.pk]) for v in viewers]
            targets.append((f"{ws_base}/ws/overview/", people.cookies[owner.pk]))
        sockets = Sockets(targets, base_url)
        sockets.start()
        pages = PageTrickle(
            [f"{base_url}/", f"{base_url}/jobs/{people.visitor_job}/"],
            people.cookies[people.visitor.pk],
        )
        sockets.wait_open()
        sockets.watch.measuring = published.measuring = True
        pages.start()
    _workers_pause(paused=False)
    jobs = _wait_all(ids)
    result: dict[str, Any] = {}
    if sockets is not None and pages is not None and published is not None:
        pages.ended.set()
        pages.join()
        sockets.stop()
        published.ended.set()
        published.join(10)
        delays = [d for per_chunk in sockets.watch.delays.values() for d in per_chunk]
        last = [max(per_chunk) for per_chunk in sockets.watch.delays.values()]
        print(
            f"{sockets.watch.opened} sockets opened, {sockets.watch.messages} messages, "
            f"{sockets.watch.resyncs} resyncs, "
            f"{len(sockets.errors)} failed: {sockets.errors[:3]}",
            flush=True,
        )
        result.update(
            delays=delays,
            last=last,
            published=list(published.delays.values()),
            pages=pages.times,
            page_failures=pages.failures,
        )
    started = min(job.started_at for job in jobs)
    finished = max(job.finished_at for job in jobs)
    result["wall"] = (finished - started).total_seconds()
    return result


def main() -> int:
    rounds = int(os.environ.get("BENCH_LIVE_ROUNDS", "3"))
    cores = os.cpu_count() or 1
    extra = [m for m in os.environ.get("COREBOARD_JOB_KINDS", "").split(",") if m]
    os.environ["COREBOARD_JOB_KINDS"] = ",".join([*extra, burn_nice.__name__])
    # Every viewer is a person with their own sockets; the cap is per person anyway.
    with harness.running_stack(workers=cores, worker_lacks=frozenset({burn_nice.NAME})) as stack:
        from coreconf import config
        from tests.processes import start_celery_worker

        default_nice = config.integer("COREBOARD_CHUNK_NICE", stack.env)
        level = start_celery_worker(
            {**stack.env, "COREBOARD_WORKER_KINDS": burn_nice.NAME, "COREBOARD_CHUNK_NICE": "0"},
            concurrency=cores,
        )
        stack.stop_later(level)
        people = _people()
        setups = {
            f"nice {default_nice}, watched": ("burn", True),
            "nice 0, watched": (burn_nice.NAME, True),
            f"nice {default_nice}, unwatched": ("burn", False),
            "nice 0, unwatched": (burn_nice.NAME, False),
        }
        for kind in ("burn", burn_nice.NAME):  # both workers (and daphne) warm
            _wait_all(_submit(people, kind, chunks=4))
        only = os.environ.get("BENCH_LIVE_ONLY", "")
        setups = {name: setup for name, setup in setups.items() if only in name}
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
        names = list(setups)
        load_before = os.getloadavg()
        for run in range(rounds):
            order = names[run % len(names) :] + names[: run % len(names)]
            for name in order:
                kind, watched = setups[name]
                try:
                    outcome = _run(stack.base_url, people, kind, watched=watched)
                except Exception:
                    for process in stack.processes:
                        alive = process.process.poll() is None
                        print(f"--- {process.name} (alive: {alive}):\n{process.output()[-3000:]}")
                    raise
                results[name].append(outcome)
                summary = f"wall {outcome['wall']:.2f} s"
                if watched:
                    summary += (
                        f", chunk end → published p50 "
                        f"{_median(outcome['published']) * 1000:.0f} p99 "
                        f"{_percentile(outcome['published'], 0.99) * 1000:.0f} ms"
                        f", chunk end → viewer p50 {_median(outcome['delays']) * 1000:.0f}"
                        f" p99 {_percentile(outcome['delays'], 0.99) * 1000:.0f} ms, pages p95 "
                        f"{_percentile(outcome['pages'], 0.95) * 1000:.0f} ms"
                    )
                print(f"round {run + 1}, {name}: {summary}", flush=True)
        load_after = os.getloadavg()
    if only:
        print("BENCH_LIVE_ONLY: a partial run, BENCHMARKS.md left as it was")
        return 0
    report.write_section(
        "live", _section(results, default_nice, cores, rounds, load_before, load_after)
    )
    print("wrote BENCHMARKS.md")
    return 0


def _section(
    results: dict[str, list[dict[str, Any]]],
    default_nice: int,
    cores: int,
    rounds: int,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    ideal = JOBS * CHUNKS * CHUNK_MS / 1000 / cores

    def pooled(name: str, key: str) -> list[float]:
        return [value for outcome in results[name] for value in outcome[key]]

    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    def walls(name: str) -> list[float]:
        return [outcome["wall"] for outcome in results[name]]

    rows = []
    for nice in (default_nice, 0):
        name = f"nice {nice}, watched"
        delays, last, pages = pooled(name, "delays"), pooled(name, "last"), pooled(name, "pages")
        published = pooled(name, "published")
        failures = sum(outcome["page_failures"] for outcome in results[name])
        rows.append(
            f"| {nice} | **{ms(statistics.median(delays))}** | {ms(_percentile(delays, 0.95))} | "
            f"**{ms(_percentile(delays, 0.99))}** | {ms(_percentile(last, 0.99))} | "
            f"{len(delays):,} | **{ms(_percentile(pages, 0.95))}** | "
            f"{ms(statistics.median(pages))} | {len(pages)} ({failures} failed) | "
            f"{ms(statistics.median(published))} / {ms(_percentile(published, 0.99))} |"
        )
    cost_rows = []
    for nice in (default_nice, 0):
        watched, unwatched = walls(f"nice {nice}, watched"), walls(f"nice {nice}, unwatched")
        cost_rows.append(
            f"| {nice} | {statistics.median(watched):.2f} ({ideal / statistics.median(watched):.2f}) "
            f"| {statistics.median(unwatched):.2f} ({ideal / statistics.median(unwatched):.2f}) | "
            f"**{statistics.median(watched) / statistics.median(unwatched):.3f}** | "
            + ", ".join(f"{w / u:.3f}" for w, u in zip(watched, unwatched, strict=True))
            + " |"
        )
    nice_ratio = [
        a / b
        for a, b in zip(
            walls(f"nice {default_nice}, unwatched"), walls("nice 0, unwatched"), strict=True
        )
    ]
    return f"""## Live latency with every core computing

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {harness.machine()}; load average
{load_before[0]:.1f} before, {load_after[0]:.1f} after; {rounds} rounds, the four setups
interleaved (rotating which goes first).

Load: {JOBS} people submit a `burn` job of {CHUNKS} × {CHUNK_MS} ms each, all at once, on
{cores} worker processes (every core computes until the last chunk; ideal wall
{ideal:.1f} s). Watching: each job's page is open {VIEWERS_PER_JOB} times (its owner and
four staff colleagues: {JOBS * VIEWERS_PER_JOB} job sockets, each its own login), and each
owner has the overview open too ({JOBS} more sockets); another person loads the overview
and their job's page, one request every {PAGE_EVERY_S * 1000:.0f} ms. The clients run in
the bench's process on the same cores. "Chunk end → viewer" is each chunk's `finished_at`
to its receipt, for every viewer of every chunk; "last viewer" per chunk, the slowest of
its five; "published" is when the chunk's end reached a plain listener of the job's group
(the engine's share; the rest is daphne's). COREBOARD_CHUNK_NICE {default_nice} is the
default.

| chunk processes' nice | chunk end → viewer p50 (ms) | p95 | p99 | last viewer p99 | receipts | page p95 (ms) | page p50 | pages | chunk end → published p50 / p99 |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Goals: p50 ≤ {ms(GOALS["p50"])} ms, p99 ≤ {ms(GOALS["p99"])} ms, page p95 ≤ {ms(GOALS["page_p95"])} ms.

What watching costs the jobs (the twenty jobs' wall, first start → last finish, in s, with
the efficiency against the ideal):

| chunk processes' nice | watched | unwatched | watched / unwatched (median) | by round |
|---|---|---|---|---|
{chr(10).join(cost_rows)}

Unwatched, nice {default_nice} over nice 0 (the priority's own cost to the jobs): median
**{statistics.median(nice_ratio):.3f}** (by round {", ".join(f"{r:.3f}" for r in nice_ratio)})."""


if __name__ == "__main__":
    sys.exit(main())
