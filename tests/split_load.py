"""A big whitespace-free upload, previewed and created as a 256-chunk word count against a real
daphne, while another person loads a page over and over: what that person waited.

Shared by the integration test (tests/integration/test_split_load.py asserts the figures)
and the benchmark (tests/benchmarks/abuse.py reports them). Before splits became arithmetic
(issue 21), previewing 256 chunks of a 20 MB file with no whitespace took 126 s of daphne's
CPU and the other person's p95 was 6.2 s.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil

SIZE = 20 * 1024 * 1024
CHUNKS = 256
PREVIEWS = 20
# Page loads of the other person alone first, for comparison: the machine's own pace.
BASELINE_PAGES = 30
# Bodies the daphne must accept for the upload (its COREBOARD_UPLOAD_MAX_BYTES).
UPLOAD_MAX_BYTES = 32 * 1024 * 1024


@dataclass
class Figures:
    """Seconds: each page load of the other person while the requests ran, and the requests."""

    pages: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    page_failures: list[str] = field(default_factory=list)
    upload_s: float = 0.0
    previews_s: list[float] = field(default_factory=list)
    create_s: float = 0.0
    preview_chunks: int = 0
    job_id: int = 0
    # CPU seconds daphne spent (user + system, all its threads) on PREVIEWS previews once
    # the other person stopped: a figure that does not depend on how busy the machine is.
    previews_cpu_s: float = 0.0
    # When each page load ended and the step then running ("upload", "previews", "create").
    page_steps: list[str] = field(default_factory=list)
    step: str = "upload"

    def slowest_by_step(self) -> str:
        slowest: dict[str, float] = {}
        for step, page in zip(self.page_steps, self.pages, strict=True):
            slowest[step] = max(slowest.get(step, 0.0), page)
        return ", ".join(f"{step} {page * 1000:.0f}" for step, page in slowest.items())

    def page_percentile(self, share: float, pages: list[float] | None = None) -> float:
        ordered = sorted(self.pages if pages is None else pages)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    def summary(self) -> str:
        return (
            f"other person's page: n={len(self.pages)} "
            f"p50 {statistics.median(self.pages) * 1000:.1f} ms, "
            f"p95 {self.page_percentile(0.95) * 1000:.1f} ms, "
            f"max {max(self.pages) * 1000:.1f} ms (slowest while: {self.slowest_by_step()} ms; "
            "alone before: "
            f"p50 {statistics.median(self.baseline) * 1000:.1f} ms, "
            f"p95 {self.page_percentile(0.95, self.baseline) * 1000:.1f} ms); "
            f"upload {self.upload_s:.2f} s, "
            f"previews {', '.join(f'{s * 1000:.0f}' for s in self.previews_s)} ms, "
            f"create {self.create_s * 1000:.0f} ms; daphne CPU per preview "
            f"{self.previews_cpu_s / PREVIEWS * 1000:.1f} ms"
        )


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def big_wordcount_under_load(
    base_url: str, *, daphne_pid: int, token: str, cookie: str, page: str = "/", size: int = SIZE
) -> Figures:
    """Upload `size` bytes of one letter with `token`, preview the 256-chunk word count
    PREVIEWS times and create it, while the session `cookie` loads `page` back to back
    (BASELINE_PAGES times alone first)."""
    figures = Figures()
    daphne = psutil.Process(daphne_pid)
    sampling = threading.Event()
    done = threading.Event()

    def sample() -> None:
        with httpx.Client(base_url=base_url, headers={"Cookie": cookie}, timeout=60) as client:
            client.get(page).raise_for_status()  # warm: the first load compiles templates
            for _ in range(BASELINE_PAGES):
                started = time.perf_counter()
                client.get(page).raise_for_status()
                figures.baseline.append(time.perf_counter() - started)
            sampling.set()
            while not done.is_set():
                started = time.perf_counter()
                response = client.get(page)
                figures.pages.append(time.perf_counter() - started)
                figures.page_steps.append(figures.step)
                if response.status_code != 200:
                    figures.page_failures.append(f"{response.status_code} {response.text[:200]}")

    sampler = threading.Thread(target=sample, name="other-person")
    sampler.start()
    try:
        sampling.wait(timeout=120)
        headers = {"Authorization": f"Token {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=300) as client:
            started = time.perf_counter()
            uploaded = client.post(
                "/api/uploads/", files={"file": ("one-word.txt", b"a" * size, "text/plain")}
            )
            figures.upload_s = time.perf_counter() - started
            assert uploaded.status_code == 201, uploaded.text
            body = {
                "kind": "wordcount",
                "params": {"upload": uploaded.json()["id"], "chunks": CHUNKS},
            }
            figures.step = "previews"
            for _ in range(PREVIEWS):
                started = time.perf_counter()
                preview = client.post("/api/jobs/preview/", json=body)
                figures.previews_s.append(time.perf_counter() - started)
                assert preview.status_code == 200, preview.text
                figures.preview_chunks = preview.json()["chunks"]
            figures.step = "create"
            started = time.perf_counter()
            created = client.post("/api/jobs/", json=body)
            figures.create_s = time.perf_counter() - started
            assert created.status_code == 201, created.text
            figures.job_id = created.json()["id"]
            done.set()
            sampler.join()
            cpu = _cpu(daphne)
            for _ in range(PREVIEWS):
                assert client.post("/api/jobs/preview/", json=body).status_code == 200
            figures.previews_cpu_s = _cpu(daphne) - cpu
    finally:
        done.set()
        sampler.join()
    return figures
