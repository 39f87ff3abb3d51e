"""`make bench`, front end: do the live pages stay smooth under load?

Load: 20 running jobs, one 10,000-chunk job and one 100,000-chunk job (short chunks, so the
pages get a stream of events), on real prefork workers. In Debian's Chromium (Playwright),
the two big job pages and the overview are each watched for WATCH_SECONDS: animation
frames per second,
long tasks (> 50 ms, the browser's own PerformanceObserver), and the time to first render
of the job page's snapshot. Writes the "frontend" section of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tests.benchmarks import harness, report

WATCH_SECONDS = int(os.environ.get("BENCH_WATCH_SECONDS", "15"))
BIG_JOB_CHUNKS = 10_000
HUGE_JOB_CHUNKS = int(os.environ.get("BENCH_HUGE_CHUNKS", "100000"))
RUNNING_JOBS = 20

PROBE = """
window.__bench = { frames: 0, longTasks: [], loading: [], start: performance.now() };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    // Buffered ones happened while the page loaded, before it was first drawn.
    const into = entry.startTime < window.__bench.start ? "loading" : "longTasks";
    window.__bench[into].push(entry.duration);
  }
}).observe({ type: "longtask", buffered: true });
(function tick() { window.__bench.frames++; requestAnimationFrame(tick); })();
"""
RESULT = """
(() => {
  const b = window.__bench;
  const seconds = (performance.now() - b.start) / 1000;
  return { fps: b.frames / seconds, long: b.longTasks, loading: b.loading, seconds };
})()
"""


def _watch(page: Any, url: str, ready: str) -> dict[str, Any]:
    received: list[int] = []

    def frames(socket: Any) -> None:
        socket.on("framereceived", lambda payload: received.append(len(payload)))

    page.on("websocket", frames)
    began = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, timeout=60_000)
    first_render = time.perf_counter() - began
    first_frame = received[0] if received else 0
    # The HTML and scripts alone (navigation start → DOMContentLoaded ended), in seconds.
    html_s = page.evaluate(
        "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd / 1000"
    )
    page.evaluate(PROBE)
    page.wait_for_timeout(WATCH_SECONDS * 1000)
    measured = page.evaluate(RESULT)
    page.remove_listener("websocket", frames)
    long_tasks = measured["long"]
    return {
        "first_render_s": first_render,
        "html_s": html_s,
        "snapshot_kb": first_frame / 1000,
        "socket_kb_per_s": sum(received) / 1000 / (time.perf_counter() - began),
        "loading_worst_ms": max(measured["loading"], default=0.0),
        "fps": measured["fps"],
        "long_tasks": len(long_tasks),
        "long_task_ms": sum(long_tasks),
        "worst_ms": max(long_tasks, default=0.0),
        "seconds": measured["seconds"],
    }


def main() -> int:
    with harness.running_stack(workers=os.cpu_count() or 1) as stack:
        base_url = stack.base_url
        from django.contrib.auth import get_user_model
        from django.db import transaction
        from playwright.sync_api import sync_playwright

        from jobs import services

        user, _ = get_user_model().objects.get_or_create(username="bench")
        user.set_password("bench-password-1")
        user.save()

        with transaction.atomic():
            # Short chunks, one in flight per job: the broker's queue interleaves every job,
            # so all of them progress (and publish) at once, as on a busy shared cluster.
            for _ in range(RUNNING_JOBS):
                services.job_create(
                    owner=user, kind="burn", params={"chunks": 10_000, "ms": 1}, parallelism=1
                )
            big, huge = (
                services.job_create(
                    owner=user,
                    kind="burn",
                    params={"chunks": chunks, "ms": 1},
                    parallelism=16,
                )
                for chunks in (BIG_JOB_CHUNKS, HUGE_JOB_CHUNKS)
            )

        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base_url}/accounts/login/")
            page.get_by_label("Username").fill("bench")
            page.get_by_label("Password").fill("bench-password-1")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base_url}/")
            job_page = _watch(page, f"{base_url}/jobs/{big.pk}/", "#chunk-grid[data-ready=true]")
            big.refresh_from_db()
            done_during = big.done_chunks
            huge_page = _watch(
                page,
                f"{base_url}/jobs/{huge.pk}/",
                f"#chunk-grid[data-ready=true][data-total='{HUGE_JOB_CHUNKS}']",
            )
            overview = _watch(page, f"{base_url}/", "#connection[data-state=live]")
            browser.close()
        for job in user.jobs.filter(status__in=("pending", "running")):
            services.job_cancel(job=job)
        _write(job_page, huge_page, overview, done_during)
    return 0


def _write(
    job_page: dict[str, Any], huge_page: dict[str, Any], overview: dict[str, Any], done: int
) -> None:
    from jobs import protocol  # Django is set up by now (harness.running_stack)

    def row(name: str, m: dict[str, Any]) -> str:
        return (
            f"| {name} | {m['first_render_s']:.2f} | {m['html_s']:.2f} | {m['fps']:.0f} | {m['long_tasks']} | "
            f"{m['long_task_ms']:.0f} | {m['worst_ms']:.0f} | {m['loading_worst_ms']:.0f} | "
            f"{m['snapshot_kb']:,.0f} | {m['socket_kb_per_s']:,.0f} |"
        )

    report.write_section(
        "frontend",
        f"""## Live pages under load (Chromium)

Measured on {harness.machine()}; Chromium headless,
software rendering, on the same 2 cores as the workers, daphne, PostgreSQL and Redis.
Load: {RUNNING_JOBS} running `burn` jobs plus a {BIG_JOB_CHUNKS:,}-chunk and a
{HUGE_JOB_CHUNKS:,}-chunk `burn` job, all with 1 ms chunks and all progressing at once
({done:,} chunks of the {BIG_JOB_CHUNKS:,}-chunk job had finished when its page had been
watched). A job page's first render is until its grid shows every chunk's status from the
socket's snapshot (compact: statuses packed one byte per chunk, full states only for a window
of at most ~{protocol.SNAPSHOT_RECENT + protocol.SNAPSHOT_FAILING} chunks; the grid is a
canvas drawing the rows in view); the overview's until its socket is live ("HTML and scripts": until the document's
DOMContentLoaded ended, before the socket's first message). Each page is then
watched for {WATCH_SECONDS} s: frames/s and long tasks (the browser's own, > 50 ms on the
main thread) while it runs; "worst while loading" is the longest task before the first
render; "first frame" is the socket's first message (the snapshot), "socket" all it received
per second.

| page | first render (s) | of which HTML and scripts (s) | frames/s | long tasks | long-task time (ms) | worst (ms) | worst while loading (ms) | first frame (KB) | socket (KB/s) |
|---|---|---|---|---|---|---|---|---|---|
{row(f"job page, {BIG_JOB_CHUNKS:,} chunks", job_page)}
{row(f"job page, {HUGE_JOB_CHUNKS:,} chunks", huge_page)}
{row(f"overview, {RUNNING_JOBS + 1} running jobs", overview)}
""",
    )
    print(f"job page {job_page}\nhuge job page {huge_page}\noverview {overview}")


if __name__ == "__main__":
    sys.exit(main())
