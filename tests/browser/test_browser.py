"""The job pages in Debian's Chromium (Playwright), against real daphne and prefork workers."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from playwright.sync_api import Browser, Page, expect, sync_playwright

from jobs import kinds, services
from jobs.models import Job
from jobs.selectors import jobs as selectors
from jobs.services import nodes
from launcher import stack
from tests.factories import finished, make_ended_job, make_job, make_schedule_sweep_and_hook
from tests.processes import ServerProcess, start_celery_worker, start_daphne

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_DIR = os.environ.get("COREBOARD_SCREENSHOT_DIR")
AXE_PATH = Path(__file__).resolve().parents[2] / "node_modules/axe-core/axe.min.js"
PHONE = {"width": 390, "height": 844}
# Every Content-Security-Policy violation a page reports, and every error its scripts throw
# (a module that fails to load or run), kept where the test can read them.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${where}`);
});
window.__scriptErrors = [];
window.addEventListener("error", (event) => {
  const where = event.filename ? `${event.filename}:${event.lineno}` : event.target.src;
  window.__scriptErrors.push(`${event.message || "failed to load"} ${where}`);
}, true);
window.addEventListener("unhandledrejection", (event) => {
  window.__scriptErrors.push(`unhandled rejection: ${event.reason}`);
});
"""


@pytest.fixture(scope="session", autouse=True)
def _axe_installed() -> None:
    """axe-core comes from npm: without it each browser test fails here, at once and saying
    so, while the other layers (which never read it) collect and run without node_modules."""
    if not AXE_PATH.is_file():
        pytest.fail(
            f"{AXE_PATH} is missing: run `npm ci` (make test and make screenshots do)",
            pytrace=False,
        )


@functools.cache
def axe_source() -> str:
    return AXE_PATH.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running on this thread for as long as the
    # browser lives, and Django refuses ORM calls (fixtures, database flushes) beside a
    # running loop. Nothing here is concurrent, so the guard can stand down meanwhile.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield from _launch()


def _launch() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, celery_worker: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def assert_page_is_sound(page: Page, where: str) -> None:
    """axe-core finds nothing, no CSP violation or script error, nothing wider than the
    viewport."""
    page.wait_for_load_state("load")
    page.evaluate(axe_source())
    violations = page.evaluate(
        """async () => {
          const result = await axe.run(document, { resultTypes: ["violations"] });
          const where = (v) => v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ");
          return result.violations.map((v) => `${v.id}: ${where(v)}`);
        }"""
    )
    assert violations == [], f"axe on {where}: {violations}"
    blocked = page.evaluate("window.__cspViolations")
    assert blocked == [], f"CSP on {where}: {blocked}"
    errors = page.evaluate("window.__scriptErrors")
    assert errors == [], f"script errors on {where}: {errors}"
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where} is {widths[0]} px wide in a {widths[1]} px window"


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / name), full_page=True)


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_create_a_job_and_watch_it_finish(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.get_by_role("link", name="New job").first.click()
    page.get_by_role("link", name="Burn CPU").click()
    page.get_by_label("Chunks").fill("6")
    page.get_by_label("Milliseconds per chunk").fill("1500")
    page.get_by_role("button", name="Start job").click()

    expect(page.locator("#connection")).to_have_text("live")
    progress = page.get_by_role("progressbar", name="Job progress")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#chunk-grid")).not_to_have_attribute("data-done", "0")
    expect(page.locator("#cancel-link")).to_be_visible()
    screenshot(page, "job-running.png")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#result")).to_contain_text('"chunks": 6')
    expect(page.locator("#timings")).to_contain_text("Speedup")
    expect(page.locator("#timings")).to_contain_text("Parallelism achieved")
    expect(page.locator("#speedup-figure")).to_contain_text("estimated from the chunks' CPU time")
    expect(page.locator("#cancel-link")).to_be_hidden()
    # The task stream is made once it comes near the view.
    page.locator("#timeline").scroll_into_view_if_needed()
    timeline = page.get_by_role(
        "img", name=re.compile("Timeline of 6 chunks on 2 worker processes")
    )
    expect(timeline).to_have_attribute("data-running", "0")
    expect(page.locator("#chunk-grid")).to_have_attribute("data-done", "6")
    screenshot(page, "job-finished.png")

    page.get_by_role("link", name="History").click()
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    screenshot(page, "history.png")


def test_invalid_form_shows_field_errors(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=primes")
    page.get_by_label("Start").fill("100")
    page.get_by_label("Stop").fill("10")
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_text("Must be greater than Start (100).", exact=True)).to_be_visible()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    summary.get_by_role("link", name="Stop: Must be greater than Start (100).").click()
    expect(page.get_by_label("Stop")).to_be_focused()


def test_cancel_a_running_job_from_its_page(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    page.get_by_label("Chunks").fill("4")
    page.get_by_label("Milliseconds per chunk").fill("60000")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#chunk-grid")).to_have_attribute("data-running", "2")
    # It asks first, as Delete does; keeping it running changes nothing.
    page.get_by_role("link", name="Cancel job").click()
    page.get_by_role("link", name="Keep it running").click()
    expect(page.locator("#job-status")).to_have_text("running")
    page.get_by_role("link", name="Cancel job").click()
    page.get_by_role("button", name=re.compile(r"^Cancel job #\d+$")).click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.locator("#chunk-grid")).to_have_attribute("data-cancelled", "4", timeout=10_000)


def test_mandelbrot_fills_in_band_by_band(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=mandelbrot")
    page.get_by_label("Width").fill("360")
    page.get_by_label("Height").fill("240")
    page.get_by_label("Max iter").fill("400")
    page.get_by_label("Chunks").fill("12")
    page.get_by_role("button", name="Start job").click()
    band = page.locator("#preview img").first
    expect(band).to_be_visible()
    screenshot(page, "mandelbrot-running.png")
    assert_page_is_sound(page, "a Mandelbrot job filling in")
    # Beside the progress bar, above the grid, at its real size: a band that has loaded,
    # measured with the grid in one task (bands that finish later are inserted in index
    # order, possibly before it, and are not drawn until they load).
    band_box = page.wait_for_function(
        """() => {
          const band = [...document.querySelectorAll("#preview img")].find(
            (img) => img.complete && img.naturalWidth > 0,
          );
          if (!band) return null;
          const { x, y, width } = band.getBoundingClientRect();
          const grid = document.getElementById("chunk-grid").getBoundingClientRect();
          return { x, y, width, gridY: grid.y };
        }"""
    ).json_value()
    assert band_box["width"] == 360
    assert band_box["y"] < band_box["gridY"]
    expect(page.locator("#chunk-grid")).to_have_attribute("data-done", "12", timeout=60_000)
    result = page.get_by_role("img", name="Result of job")
    expect(result).to_be_visible()
    page.wait_for_function("document.getElementById('result-file-image').naturalWidth === 360")
    result_box = result.bounding_box()
    assert result_box is not None
    assert (result_box["x"], result_box["width"], result_box["height"]) == (band_box["x"], 360, 240)
    expect(page.get_by_role("link", name="Download")).to_have_attribute(
        "href", re.compile(r"/api/jobs/\d+/result-file/\?download=1")
    )


def wordcount_job_done(page: Page, base_url: str, text: Path, chunks: int = 2) -> None:
    """Log in as alice, count the words of `text` from the form, wait for success."""
    log_in(page, base_url, "alice", "alice-password-1")
    page.goto(f"{base_url}/jobs/new/?kind=wordcount")
    page.get_by_label("Upload").set_input_files(str(text))
    page.get_by_label("Chunks").fill(str(chunks))
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)


def test_wordcount_with_a_file_from_the_form(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    text = tmp_path / "poem.txt"
    text.write_text("the cat and the hat\nthe end\n")
    wordcount_job_done(page, daphne_server, text, chunks=3)
    expect(page.locator("#result-figures")).to_contain_text("Words7")
    expect(page.locator("#result-table tbody tr").first).to_have_text("1the3")


def test_wordcount_form_rejects_a_binary_file(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\x00\x00")
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=wordcount")
    page.get_by_label("Upload").set_input_files(str(binary))
    page.get_by_role("button", name="Start job").click()
    expect(page.locator(".errorlist").get_by_text("The file looks binary")).to_be_visible()
    expect(page.locator("#error-summary")).to_be_focused()


def test_overview_shows_running_jobs_and_the_cluster(
    page: Page, daphne_server: str, alice: User
) -> None:
    job = make_job(alice, chunks=6, ms=1500, committed=True)
    log_in(page, daphne_server, "alice", "alice-password-1")
    card = page.locator(f'#active-jobs li[data-job-id="{job.pk}"]')
    expect(card).to_be_visible()
    expect(card.get_by_role("progressbar")).to_be_visible()
    expect(page.locator("#processes .proc-busy")).to_have_count(2, timeout=15_000)
    expect(page.locator("#nodes canvas")).to_have_count(1)
    expect(card).to_contain_text("chunks/s", timeout=15_000)
    screenshot(page, "overview.png")
    assert_page_is_sound(page, "the overview with a running job")
    expect(page.locator(f'#recent-jobs tr[data-job-id="{job.pk}"]')).to_be_visible(timeout=60_000)
    expect(card).to_have_count(0)


def test_a_jobs_priority_is_chosen_by_keyboard_and_shown_on_a_phone(
    page: Page, daphne_server: str, alice: User
) -> None:
    page.set_viewport_size({"width": 360, "height": 800})
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    priority = page.get_by_label("Priority")
    # Urgent is not offered to someone staff did not allow.
    expect(priority.locator("option")).to_have_count(3)
    expect(priority).to_have_value("normal")
    priority.focus()
    page.keyboard.press("End")  # the last choice: high
    expect(priority).to_have_value("high")
    page.get_by_label("Milliseconds per chunk").fill("1500")
    page.get_by_label("Chunks").fill("4")
    page.get_by_role("button", name="Start job").press("Enter")
    expect(page.locator("#priority-value")).to_have_text("High")
    assert_page_is_sound(page, "a high-priority job's page")
    page.goto(f"{daphne_server}/")
    expect(page.locator("#active-jobs .priority")).to_have_text("high priority")
    assert_page_is_sound(page, "the overview with a high-priority job")
    page.goto(f"{daphne_server}/history/")
    expect(page.locator("tbody .priority")).to_have_text("high priority")
    assert_page_is_sound(page, "the history with a high-priority job")


def test_job_page_reconnects_after_daphne_restarts(
    page: Page, child_env: dict[str, str], alice: User
) -> None:
    server, base_url = start_daphne(child_env)
    port = int(base_url.rsplit(":", 1)[1])
    try:
        with transaction.atomic():
            job = services.job_create(
                owner=alice, kind="burn", params={"chunks": 8, "ms": 1500}, parallelism=2
            )
        log_in(page, base_url, "alice", "alice-password-1")
        page.goto(f"{base_url}/jobs/{job.pk}/")
        connection = page.locator("#connection")
        expect(connection).to_have_text("live")
        server.stop()
        expect(connection).to_contain_text("disconnected — reconnecting")
        expect(page.locator("#connection[data-state=reconnecting]")).to_be_visible()
        # Only the state is a live region; the ticking seconds are hidden from it.
        expect(page.get_by_role("status").filter(has_text="reconnecting")).to_have_text(
            "disconnected — reconnecting"
        )
        expect(page.locator(".connection-countdown")).to_have_attribute("aria-hidden", "true")
        server, _ = start_daphne(child_env, port=port)
        expect(connection).to_have_text("live", timeout=20_000)
        progress = page.get_by_role("progressbar", name="Job progress")
        expect(progress).to_have_attribute("aria-valuenow", "100", timeout=60_000)
        expect(page.locator("#job-status")).to_have_text("succeeded")
        expect(page.locator("#chunk-grid")).to_have_attribute("data-done", "8")
    finally:
        server.stop()


def test_new_job_form_previews_the_chunk_count(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    preview = page.locator("#chunk-preview")
    expect(preview).to_have_attribute("aria-live", "polite")
    # The estimate (burn: exactly chunks × milliseconds) and the quotas it counts against.
    expect(preview).to_contain_text("This job will have 8 chunks and ask for about 8 CPU seconds.")
    expect(preview).to_contain_text("Quota: 3,600 CPU seconds per job, 86,400 across")
    page.get_by_label("Chunks").fill("6")
    expect(preview).to_contain_text("This job will have 6 chunks and ask for about 6 CPU seconds.")
    page.get_by_label("Milliseconds per chunk").fill("300000")
    expect(preview).to_contain_text("ask for about 1,800 CPU seconds")
    page.get_by_label("Chunks").fill("13")
    expect(preview).to_contain_text(
        "This job asks for about 3,900 CPU seconds (1.1 CPU-hours); one job may ask for at "
        "most 3,600 (COREBOARD_QUOTA_JOB_S)."
    )
    page.get_by_label("Chunks").fill("0")
    expect(preview).to_have_text("Chunks: Ensure this value is greater than or equal to 1.")
    page.goto(f"{daphne_server}/jobs/new/?kind=wordcount")
    page.get_by_label("Chunks").fill("3")
    page.wait_for_timeout(600)
    expect(page.locator("#chunk-preview")).to_have_text("")


def test_retry_the_failed_chunks_of_a_job(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    page.get_by_label("Chunks").fill("2")
    page.get_by_label("Milliseconds per chunk").fill("200")
    page.get_by_label("Fail rate").fill("1")
    page.get_by_role("button", name="Start job").click()
    retry = page.get_by_role("button", name="Retry", exact=True)
    expect(retry).to_be_hidden()
    expect(page.locator("#job-status")).to_have_text("failed", timeout=60_000)
    # The button appears when the job ends, without a reload.
    expect(retry).to_be_visible()
    expect(page.get_by_role("link", name="Delete")).to_be_visible()
    retry.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("retrying what failed")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("failed", timeout=60_000)
    # Both chunks fail every attempt: the first to fail its third fails the job, and the
    # other ends cancelled (its error kept). Which one is first is the chunks' race.
    grid = page.locator("#chunk-grid")
    grid.focus()
    option = page.locator("#chunk-option")
    expect(option).to_have_attribute("aria-label", re.compile(r"^Chunk 0: "))
    labels = [option.get_attribute("aria-label") or ""]
    page.keyboard.press("ArrowRight")
    expect(option).to_have_attribute("aria-label", re.compile(r"^Chunk 1: "))
    labels.append(option.get_attribute("aria-label") or "")
    failed = [label for label in labels if re.match(r"^Chunk \d: failed .*attempts 3\b", label)]
    assert len(failed) == 1, labels


def test_run_again_then_delete_with_confirmation(
    page: Page, daphne_server: str, alice: User
) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    page.get_by_label("Chunks").fill("2")
    page.get_by_label("Milliseconds per chunk").fill("50")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    first_url = page.url

    page.get_by_role("link", name="Run again").click()
    expect(page.get_by_text("again, with its parameters")).to_be_visible()
    expect(page.get_by_label("Chunks")).to_have_value("2")
    expect(page.get_by_label("Milliseconds per chunk")).to_have_value("50")
    expect(page.locator("#chunk-preview")).to_contain_text("This job will have 2 chunks ")
    page.get_by_label("Chunks").fill("3")
    expect(page.locator("#chunk-preview")).to_contain_text("This job will have 3 chunks ")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#chunk-grid")).to_have_attribute("data-done", "3")
    assert page.url != first_url

    page.get_by_role("link", name="Delete").click()
    heading = page.get_by_role("heading", name=re.compile(r"Delete job #\d+\?"))
    expect(heading).to_be_visible()
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name=re.compile(r"Delete job #\d+")).click()
    expect(page).to_have_url(re.compile(r"/history/$"))
    expect(page.get_by_text(re.compile(r"Job \d+ deleted\."))).to_be_visible()
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(1)


def test_failed_chunks_show_their_tracebacks(page: Page, daphne_server: str, alice: User) -> None:
    with transaction.atomic():
        job = services.job_create(
            owner=alice, kind="burn", params={"chunks": 2, "ms": 20, "fail_rate": 1}, parallelism=1
        )
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("failed", timeout=60_000)
    failure = page.locator("#failures details").first
    expect(failure).to_contain_text("Chunk 0: failed after 3 attempt(s)")
    failure.locator("summary").click()
    expect(failure.locator("pre")).to_contain_text("Traceback (most recent call last)")
    page.locator("#chunk-grid").focus()
    expect(page.locator("#chunk-details")).to_contain_text("attempts 3")


def ended_job(
    page: Page, base_url: str, owner: User, params: dict[str, object], status: str
) -> int:
    with transaction.atomic():
        job = services.job_create(owner=owner, kind="burn", params=params, parallelism=2)
    page.goto(f"{base_url}/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text(status, timeout=60_000)
    return job.pk


# Every word in a table cell on one line: a word whose characters sit on two lines was
# broken inside it ("Del ete", "0. 5 s"). A word ends at a space or after a hyphen, where
# lines may break ("a-long-file-name.txt" may wrap after "long-"). Cells too small to read
# (a visually hidden header row) are not laid out for reading and are skipped.
WORDS_BROKEN = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll("table td, table th")) {
    const box = cell.getBoundingClientRect();
    if (box.width <= 2 || box.height <= 2) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.textContent.matchAll(/[^\\s-]+-*|-+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set();
        for (const rect of range.getClientRects()) {
          if (rect.width > 0) lines.add(Math.round(rect.top + rect.height / 2));
        }
        if (lines.size > 1) {
          const table = cell.closest("table");
          broken.push(`"${word[0]}" in ${table.id || table.className} (${lines.size} lines)`);
        }
      }
    }
  }
  return broken;
}"""
# Wide tables (`table.stack`) fit their box at every width, without scrolling sideways:
# [table id, its width, its box's width] for each that does not.
TABLES_OVERFLOWING = """() => [...document.querySelectorAll("table.stack")]
  .map((table) => [table.id || table.className, table.scrollWidth, table.parentElement.clientWidth])
  .filter(([, width, box]) => width > box)"""
# The fill of a finished job's bar spans its track (after the fill's short transition).
BAR_FULL = """() => {
  const bar = document.getElementById("progress");
  const fill = bar.querySelector(".progress-fill");
  return fill.getBoundingClientRect().width >= bar.getBoundingClientRect().width - 1;
}"""


def every_page(values: dict[str, int]) -> list[str]:
    """The path of every page of the URL conf (its arguments from `values`, by name), except
    the API, the admin and /metrics (checked elsewhere): a page added later is covered."""
    from django.urls import URLPattern, URLResolver, get_resolver

    paths: list[str] = []

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if not route.startswith(("admin/", "api/")):
                    walk(pattern.url_patterns, route)
                continue
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)
            if not path.startswith(("admin/", "api/", "metrics")):
                paths.append("/" + path)

    walk(get_resolver().url_patterns, "")
    return paths


def pages_to_check(page: Page, base_url: str, paths: list[str]) -> list[str]:
    """Those of `paths` that answer GET with a whole HTML page (not a download, a fragment
    or a POST-only action)."""
    html = []
    for path in paths:
        answer = page.request.get(f"{base_url}{path}", max_redirects=0)
        is_html = answer.headers.get("content-type", "").startswith("text/html")
        if answer.status == 200 and is_html and "<html" in answer.text():
            html.append(path)
    return html


def test_every_page_reads_on_a_phone_and_a_desktop(
    browser: Browser, page: Page, daphne_server: str, staff: User, alice: User, tmp_path: Path
) -> None:
    """Every page at 390 × 844 (light and dark) and 1280 × 800, with tables full of rows and
    staff's extra columns: no word broken inside a table cell, nothing wider than the
    window, a finished job's bar full, axe content."""
    from jobs.services import studies
    from tokens import services as token_services

    for runs in range(3):
        finished(staff, chunks=2 + runs, run_s=61.7 + runs, gap_s=0.2)
    # Made as a burn job, then given a kind with large numbers among its parameters.
    big = finished(staff, chunks=4, run_s=0.25, gap_s=0.01)
    big_params = {"start": 0, "stop": 40_000_000, "chunks": 4}
    Job.objects.filter(pk=big.pk).update(kind="primes", params=big_params, result=None)
    log_in(page, daphne_server, "sam", "sam-password-1")
    done = ended_job(page, daphne_server, staff, {"chunks": 4, "ms": 50}, "succeeded")
    failing: dict[str, object] = {"chunks": 2, "ms": 20, "fail_rate": 1}
    failed = ended_job(page, daphne_server, staff, failing, "failed")
    page.goto(f"{daphne_server}/uploads/")
    text = tmp_path / "a-rather-long-file-name-of-notes.txt"
    text.write_text("some words to count\n")
    page.get_by_label("Text file").set_input_files(str(text))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_text("Uploaded 'a-rather-long-file-name-of-notes.txt'.")).to_be_visible()
    with transaction.atomic():
        study = studies.study_create(owner=staff, job=Job.objects.get(pk=done), processes=2)
    token_services.token_create(user=staff, name="laptop", expires_in_days=30)
    values = {
        "job_id": done,
        "study_id": study.pk,
        "upload_id": 0,
        "token_id": 0,
        **{f"{name}_id": pk for name, pk in make_schedule_sweep_and_hook(staff).items()},
    }
    paths = pages_to_check(page, daphne_server, every_page(values))
    # The ones this test knows of are among them (the URL conf was read).
    for known in ("/", "/history/", f"/jobs/{done}/", "/uploads/", "/tokens/", "/studies/"):
        assert known in paths, paths
    paths += [
        "/history/?q=zzz&created_from=nonsense",
        "/history/compare/?kind=burn",
        f"/history/compare/runs/?job={done}&job={failed}",
        f"/jobs/{failed}/",
        f"/jobs/{big.pk}/",
        "/jobs/987654321/",
        *[f"/jobs/new/?kind={kind.name}" for kind in kinds.all_kinds()],
    ]
    cookies = page.context.cookies()
    for name, options in [
        ("1280 × 800", {"viewport": {"width": 1280, "height": 800}}),
        ("390 × 844", {"viewport": PHONE, "is_mobile": True, "has_touch": True}),
        ("390 × 844, dark", {"viewport": PHONE, "color_scheme": "dark"}),
    ]:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        context.add_init_script(CSP_WATCH)
        context.add_cookies(cookies)  # type: ignore[arg-type]
        tab = context.new_page()
        for path in paths:
            tab.goto(f"{daphne_server}{path}")
            where = f"{path} ({name})"
            if path == f"/jobs/{failed}/":
                expect(tab.locator("#failures details").first).to_be_visible()
            if path in (f"/jobs/{done}/", f"/jobs/{big.pk}/"):
                expect(tab.locator("#job-status")).to_have_text("succeeded")
                tab.wait_for_function(BAR_FULL, timeout=3_000)
            # What a click would open is checked too (the CPU and memory table, tracebacks).
            tab.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
            if tab.locator("table.stack").count():
                expect(tab.locator("table.stack").first).to_have_attribute("data-labelled", "true")
            assert_page_is_sound(tab, where)
            assert tab.evaluate(WORDS_BROKEN) == [], f"words broken in a table cell on {where}"
            assert tab.evaluate(TABLES_OVERFLOWING) == [], f"a table wider than its box on {where}"
            if path == "/history/":
                history = tab.evaluate(
                    "[document.querySelector('table.history').scrollWidth,"
                    " document.querySelector('table.history').parentElement.clientWidth]"
                )
                print(f"history table at {name}: {history[0]} px in {history[1]} px")
        if name == "390 × 844":
            for shot, path in [
                ("phone-job.png", f"/jobs/{done}/"),
                ("phone-overview.png", "/"),
                ("phone-history.png", "/history/"),
                ("phone-uploads.png", "/uploads/"),
            ]:
                tab.goto(f"{daphne_server}{path}")
                tab.wait_for_load_state("load")
                if shot == "phone-job.png":
                    # The chunk counts come with the socket's snapshot.
                    expect(tab.locator("#chunk-grid")).to_have_attribute("data-done", "4")
                screenshot(tab, shot)
        context.close()
    page.context.clear_cookies()
    page.goto(f"{daphne_server}/accounts/login/")
    assert_page_is_sound(page, "the login page")
    # The watch itself works: an inline style is blocked and reported.
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__cspViolations")[0].startswith("style-src")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(f"{daphne_server}{icon}").status == 200


def test_the_checks_find_a_broken_word_and_an_empty_bar(
    page: Page, daphne_server: str, alice: User
) -> None:
    """The checks above can fail: a squeezed cell breaks its word, a bar left empty is seen."""
    job = finished(alice, chunks=2, run_s=0.5, gap_s=0.01)
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    page.wait_for_function(BAR_FULL, timeout=3_000)
    # Emptied and measured in one task: a live update in between would fill it again.
    emptied_is_full = page.evaluate(
        f"""() => {{
          const fill = document.querySelector('#progress .progress-fill');
          fill.style.transition = 'none';
          fill.style.width = '0%';
          return ({BAR_FULL})();
        }}"""
    )
    assert emptied_is_full is False
    page.evaluate(
        """document.querySelector("main").insertAdjacentHTML("beforeend",
          '<table id="squeezed"><tr><td>Delete</td></tr></table>');
        const cell = document.querySelector("#squeezed td");
        cell.style.cssText = "width: 2ch; overflow-wrap: anywhere; display: block";"""
    )
    broken = page.evaluate(WORDS_BROKEN)
    assert len(broken) == 1
    assert broken[0].startswith('"Delete" in squeezed ('), broken


def test_run_again_a_wordcount_job_without_choosing_a_file(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    text = tmp_path / "sample.txt"
    text.write_text("one two two three three three\n")
    wordcount_job_done(page, daphne_server, text)
    first_url = page.url
    page.get_by_role("link", name="Run again").click()
    expect(page.get_by_text("Uses “sample.txt” again")).to_be_visible()
    page.get_by_label("Chunks").fill("3")
    page.get_by_role("button", name="Start job").click()
    expect(page).not_to_have_url(first_url)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#params")).to_contain_text("sample.txt")
    expect(page.locator("#result-table tbody tr").first).to_contain_text("three")


def test_overview_keeps_focus_and_tolerates_server_changes(
    page: Page, daphne_server: str, alice: User
) -> None:
    job = make_job(alice, chunks=6, ms=1500, committed=True)
    log_in(page, daphne_server, "alice", "alice-password-1")
    card = page.locator(f'#active-jobs li[data-job-id="{job.pk}"]')
    link = card.get_by_role("link")
    link.focus()
    bar = card.get_by_role("progressbar")
    before = bar.get_attribute("aria-valuenow")
    # Pushes arrive once a second: wait until one has moved the bar.
    expect(bar).not_to_have_attribute("aria-valuenow", before or "0", timeout=15_000)
    assert page.evaluate("document.activeElement.getAttribute('href')") == f"/jobs/{job.pk}/"
    assert page.evaluate("document.activeElement.isConnected")


def test_chunk_grid_is_one_keyboard_widget(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    pk = ended_job(page, daphne_server, alice, {"chunks": 12, "ms": 10}, "succeeded")
    page.goto(f"{daphne_server}/jobs/{pk}/")
    grid = page.get_by_role("listbox", name="Chunks")
    expect(grid).to_have_attribute("data-ready", "true")
    # One option, the chosen chunk, whatever the number of chunks; the grid is one Tab stop.
    expect(grid.get_by_role("option")).to_have_count(1)
    expect(grid).to_have_attribute("tabindex", "0")
    assert page.locator("#chunk-grid [tabindex], #chunk-grid a, #chunk-grid button").count() == 0
    grid.focus()
    chosen = page.locator("#chunk-option")
    page.keyboard.press("ArrowRight")
    expect(chosen).to_have_attribute("data-index", "1")
    page.keyboard.press("End")
    expect(chosen).to_have_attribute("data-index", "11")
    expect(chosen).to_have_attribute("aria-posinset", "12")
    expect(chosen).to_have_attribute("aria-setsize", "12")
    page.keyboard.press("ArrowLeft")
    expect(chosen).to_have_attribute("data-index", "10")
    page.keyboard.press("Home")
    expect(chosen).to_have_attribute("data-index", "0")
    expect(page.locator("#chunk-details")).to_contain_text("Chunk 0: done")
    expect(chosen).to_have_attribute("aria-label", re.compile(r"^Chunk 0: done on .* pid \d+"))
    expect(page.locator("#inspector-index")).to_have_text("0")
    # One Tab leaves the grid.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#chunk-grid') === null")


def test_a_chunks_details_are_fetched_when_opened_by_keyboard(
    page: Page, daphne_server: str, alice: User
) -> None:
    # The page holds every chunk's status but the full state only of a window (the chunks
    # started last); another chunk's comes from the API when a person opens it.
    log_in(page, daphne_server, "alice", "alice-password-1")
    pk = ended_job(page, daphne_server, alice, {"chunks": 400, "ms": 1}, "succeeded")
    page.goto(f"{daphne_server}/jobs/{pk}/")
    grid = page.get_by_role("listbox", name="Chunks")
    expect(grid).to_have_attribute("data-done", "400")
    window = {chunk["index"] for chunk in selectors.job_chunk_window(Job.objects.get(pk=pk))}
    # Not chunk 0: the inspector shows it from the start, so the page asks for it unbidden.
    outside = min(set(range(1, 400)) - window)
    grid.focus()
    with page.expect_response(re.compile(rf"/api/jobs/{pk}/chunks/{outside}/$")) as answer:
        page.keyboard.press("Home")
        for _ in range(outside):
            page.keyboard.press("ArrowRight")
    assert answer.value.ok
    expect(page.locator("#chunk-option")).to_have_attribute("data-index", str(outside))
    figures = page.locator("#inspector-figures")
    expect(figures).to_contain_text(re.compile(r"Process\s*\S+ pid \d+"))
    expect(figures).to_contain_text(re.compile(r"Status\s*done, attempts 1"))
    expect(page.locator("#chunk-option")).to_have_attribute(
        "aria-label", re.compile(rf"^Chunk {outside}: done on \S+ pid \d+, attempts 1")
    )
    # Focus stays on the grid; live updates and answers never move it.
    expect(grid).to_be_focused()
    assert_page_is_sound(page, "a 400-chunk job's grid with a chunk opened by keyboard")


def test_job_end_shows_in_the_title_is_announced_and_notifies(
    page: Page, daphne_server: str, alice: User
) -> None:
    page.add_init_script(
        """
        window.__notified = [];
        window.Notification = class {
          constructor(title, options) {
            window.__notified.push(title);
            window.__notifiedBody = options.body;
          }
          static get permission() { return window.__permission || "default"; }
          static requestPermission() {
            window.__permission = "granted";
            return Promise.resolve("granted");
          }
        };
        """
    )
    log_in(page, daphne_server, "alice", "alice-password-1")
    job = make_job(alice, chunks=6, ms=1500, committed=True)
    page.goto(f"{daphne_server}/jobs/{job.pk}/")
    page.get_by_role("button", name="Notify me when it ends").click()
    notify = page.locator("#notify-button")
    expect(notify).to_have_attribute("aria-pressed", "true")
    expect(notify).to_have_text("You will be notified when it ends")
    assert_page_is_sound(page, "a running job")
    expect(page).to_have_title(re.compile(r"^\d+(\.\d)?% · Job \d+ · Coreboard$"))
    announcer = page.locator("#job-announcer")
    expect(announcer).to_have_text("")
    expect(page).to_have_title(f"✓ Job {job.pk} succeeded · Coreboard", timeout=60_000)
    expect(announcer).to_have_text(f"Job {job.pk} succeeded.")
    assert page.evaluate("window.__notified") == [f"Job {job.pk} succeeded"]
    # Its body is the final state (the counts the page shows once it ended), not the last
    # update's before it.
    body = page.evaluate("window.__notifiedBody")
    assert ": 6 of 6 chunks done · in " in body, body
    assert "running" not in body, body
    assert "pending" not in body, body
    # The result and the notes come in without a reload.
    expect(page.locator("#result-figures")).to_contain_text("Chunks burnt")
    page.reload()
    expect(page.locator("#job-announcer")).to_have_text("")


def test_times_use_the_viewers_time_zone(
    browser: Browser, page: Page, daphne_server: str, alice: User
) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    pk = ended_job(page, daphne_server, alice, {"chunks": 2, "ms": 10}, "succeeded")
    context = browser.new_context(timezone_id="Asia/Kolkata")
    context.add_cookies(page.context.cookies())  # type: ignore[arg-type]
    tab = context.new_page()
    shape = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GMT\+5:30$")
    tab.goto(f"{daphne_server}/history/")
    expect(tab.locator(f'tr[data-job-id="{pk}"] time')).to_have_text(shape)
    tab.goto(f"{daphne_server}/")
    expect(tab.locator(f'#recent-jobs tr[data-job-id="{pk}"] time')).to_have_text(shape)
    context.close()


def test_overview_takes_a_capped_list_and_processes_without_a_job(
    page: Page, daphne_server: str, alice: User
) -> None:
    # The server may cap the active list (`active_more` counts the rest) and leave out the
    # job of a process that works for somebody else: a stand-in socket sends such a state.
    job = {
        "id": 41, "kind": "burn", "status": "running", "progress": 0.5, "done_chunks": 2,
        "total_chunks": 4, "throughput": 1.0, "eta_seconds": 2.0,
    }  # fmt: skip
    state = {
        "type": "overview.state",
        "active": [job],
        "active_more": 7,
        "recent": [],
        "cluster": {
            "now": 1000.0,
            "nodes": [],
            "processes": [{"host": "vm", "pid": 7, "core": None, "state": "busy",
                           "since": 990.0, "last_seen": 999.0}],
            "throughput": [],
        },
    }  # fmt: skip
    page.route_web_socket(re.compile(r"/ws/overview/$"), lambda ws: ws.send(json.dumps(state)))
    log_in(page, daphne_server, "alice", "alice-password-1")
    expect(page.locator("#active-count")).to_have_text("(8)")
    expect(page.locator("#active-more")).to_have_text("and 7 more")
    expect(page.locator('#active-jobs li[data-job-id="41"]')).to_contain_text("2/4 chunks")
    expect(page.locator("#processes tr")).to_have_count(1)
    expect(page.locator("#processes tr")).to_contain_text("another job")


def test_admin_pages_keep_to_the_content_security_policy(
    page: Page, daphne_server: str, django_user_model: type[User], alice: User
) -> None:
    django_user_model.objects.create_superuser("root", password="root-password-1")
    with transaction.atomic():
        job = services.job_create(owner=alice, kind="burn", params={"chunks": 1, "ms": 1})
    log_in(page, daphne_server, "root", "root-password-1")
    for path in ("/admin/", "/admin/jobs/job/", f"/admin/jobs/job/{job.pk}/change/"):
        page.goto(f"{daphne_server}{path}")
        page.wait_for_load_state("load")
        assert page.evaluate("window.__cspViolations") == [], path


def test_a_ten_thousand_chunk_job_stays_live(page: Page, daphne_server: str, alice: User) -> None:
    with transaction.atomic():
        job = services.job_create(
            owner=alice, kind="burn", params={"chunks": 10_000, "ms": 1}, parallelism=2
        )
    closes: list[int] = []
    page.on("websocket", lambda socket: socket.on("close", lambda _: closes.append(1)))
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/{job.pk}/")
    expect(page.locator("#chunk-grid")).to_have_attribute("data-total", "10000")
    expect(page.locator("#chunk-grid")).to_have_attribute("data-ready", "true")
    expect(page.locator("#counts")).to_contain_text("10000 of 10000 chunks done", timeout=120_000)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#chunk-grid")).to_have_attribute("data-done", "10000")
    expect(page.locator("#connection")).to_have_text("live")
    assert closes == []  # the snapshot fits daphne's frame limit: no 1011 and retry


def test_token_made_in_the_browser_works_until_revoked(
    page: Page, daphne_server: str, alice: User
) -> None:
    import httpx

    page.set_viewport_size({"width": 360, "height": 800})
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()
    # By keyboard: type the name, Enter submits.
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Name").press("Enter")
    key = page.get_by_label("Key").input_value()
    assert key.startswith("cb_")
    # The page's own content fits a phone (the shared top bar is the restyle's business).
    assert page.evaluate("document.querySelector('main').scrollWidth") <= 360
    screenshot(page, "tokens.png")

    headers = {"Authorization": f"Token {key}"}
    assert httpx.get(f"{daphne_server}/api/jobs/", headers=headers).status_code == 200
    page.goto(f"{daphne_server}/tokens/")
    # 360 px wide: the table stacks, and each cell is read with its column's label.
    expect(page.get_by_role("cell", name="Name laptop", exact=True)).to_be_visible()
    assert key not in page.content()
    page.get_by_role("button", name="Revoke token laptop").click()
    expect(page.get_by_role("status").filter(has_text="revoked")).to_be_visible()
    assert httpx.get(f"{daphne_server}/api/jobs/", headers=headers).status_code == 401


def test_uploads_page_deletes_by_keyboard(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("some words to count\n")
    wordcount_job_done(page, daphne_server, text)
    page.goto(f"{daphne_server}/uploads/")
    expect(page.get_by_role("cell", name=text.name, exact=True)).to_be_visible()
    page.get_by_role("button", name=f"Delete {text.name}").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Upload '{text.name}' deleted.")).to_be_visible()
    expect(page.get_by_text("You have not uploaded anything.")).to_be_visible()


def test_staff_drain_a_node_from_the_overview_on_a_phone(
    browser: Browser, page: Page, daphne_server: str, alice: User, staff: User
) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    expect(page.locator("#nodes .node").first).to_be_visible(timeout=15_000)
    expect(page.locator("#nodes .node-info").first).to_contain_text("Python")
    expect(page.locator(".node-control")).to_have_count(0)

    context = browser.new_context(viewport={"width": 360, "height": 800})
    context.add_init_script(CSP_WATCH)
    tab = context.new_page()
    log_in(tab, daphne_server, "sam", "sam-password-1")
    active = tab.locator("#nodes .node").filter(has=tab.locator(".node-state-active")).first
    name = active.locator("h3").inner_text()
    card = tab.locator("#nodes .node").filter(has=tab.get_by_role("heading", name=name))
    drain = card.get_by_role("button", name=f"Drain node {name}")
    expect(drain).to_be_visible(timeout=15_000)
    assert_page_is_sound(tab, "the overview for staff at 360 px")
    try:
        drain.focus()
        tab.keyboard.press("Enter")
        expect(tab.locator("#node-status")).to_contain_text(f"Node {name} is draining")
        resume = card.get_by_role("button", name=f"Resume node {name}")
        expect(resume).to_be_visible()
        expect(card.locator(".node-state")).to_contain_text("drained")
        # The same button, still focused: the live update never moved focus.
        assert tab.evaluate("document.activeElement.getAttribute('aria-label')") == (
            f"Resume node {name}"
        )
        assert_page_is_sound(tab, "the overview with a drained node at 360 px")
        tab.reload()
        expect(card.locator(".node-state")).to_contain_text("drained")
        card.get_by_role("button", name=f"Resume node {name}").click()
        expect(tab.locator("#node-status")).to_contain_text(f"Node {name} takes work again")
        expect(card.locator(".node-state")).to_have_text("active")
    finally:
        # Playwright's loop runs on this thread: the service (which publishes through
        # async_to_sync) runs on another.
        thread = threading.Thread(target=nodes.node_drain, kwargs={"node": name, "draining": False})
        thread.start()
        thread.join()


def test_measure_scaling_by_keyboard_and_read_the_study(
    browser: Browser, page: Page, daphne_server: str, alice: User
) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    ended_job(page, daphne_server, alice, {"chunks": 4, "ms": 300}, "succeeded")
    page.locator("#study-button").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"Scaling study #\d+"))).to_be_visible()
    # The page follows the study live: both runs end and the figures fill in without reload.
    expect(page.locator("#study-status")).to_have_text("succeeded", timeout=90_000)
    rows = page.locator("#study-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator('[data-field="speedup"]')).to_have_text(re.compile(r"^\d+\.\d\d×$"))
    expect(rows.nth(1).locator('[data-field="karp_flatt"]')).not_to_be_empty()
    # Two levels fit any serial fraction exactly: the study says why it shows no fit.
    expect(page.locator("#study-fit")).to_contain_text("No Amdahl fit: it needs speedups at 3")
    expect(page.locator("#study-cancel-link")).to_be_hidden()
    csv_url = page.locator("#study-export-csv").get_attribute("href")
    exported = page.request.get(f"{daphne_server}{csv_url}")
    assert exported.text().splitlines()[0].startswith("parallelism,job,status,wall_seconds")
    study_path = page.url.removeprefix(daphne_server)
    screenshot(page, "scaling-study.png")
    # The run at parallelism 2 shows the study's speedup on its own page.
    studied = rows.nth(1).locator('[data-field="speedup"]').inner_text()
    page.locator('#study-runs li[data-parallelism="2"] a').click()
    expect(page.locator('#speedup-figure [data-figure="speedup"]')).to_have_text(studied)
    expect(page.locator("#timings")).to_contain_text("against a measured parallelism-1 run")
    page.goto(f"{daphne_server}{study_path}")
    cookies = page.context.cookies()
    for name, options in [
        ("desktop", {"viewport": {"width": 1280, "height": 900}}),
        ("phone", {"viewport": {"width": 360, "height": 740}, "is_mobile": True}),
    ]:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        context.add_init_script(CSP_WATCH)
        context.add_cookies(cookies)  # type: ignore[arg-type]
        tab = context.new_page()
        for path in (study_path, "/studies/"):
            tab.goto(f"{daphne_server}{path}")
            assert_page_is_sound(tab, f"{path} ({name})")
        context.close()


@pytest.fixture
def chatty_worker(child_env: dict[str, str]) -> Iterator[str]:
    """A worker (one process) that has the `chatty` kind, which prints slowly; the kind is
    registered in this process too, for the test to create its job."""
    with kinds.temporary():
        from tests import kinds_chatty

        kinds.register(kinds_chatty.Chatty)
        env = {**child_env}
        env["COREBOARD_JOB_KINDS"] = f"{child_env['COREBOARD_JOB_KINDS']},tests.kinds_chatty"
        worker = start_celery_worker(env, concurrency=1)
        try:
            yield kinds_chatty.NAME
        finally:
            worker.stop()


# The Output panel's block of chunk 0 once it holds line `n`: its heading and text.
OUTPUT_LINE_SEEN = """([n]) => {
  for (const block of document.querySelectorAll("#output-blocks .output-block")) {
    const text = block.querySelector("pre").textContent;
    if (text.includes(`line ${n} of chunk 0 `)) {
      return { heading: block.querySelector("h3").textContent, text };
    }
  }
  return null;
}"""
# The first line of chunk 0 printed after `since` (s), once it is on the page: when it was
# printed and when the page first showed it (read at every frame).
OUTPUT_LINE_AFTER = """([since]) => {
  const text = document.getElementById("output-blocks").textContent;
  for (const match of text.matchAll(/line \\d+ of chunk 0 printed at ([\\d.]+)/g)) {
    const printedAt = Number(match[1]);
    if (printedAt > since) return { printedAt, seenAt: Date.now() / 1000 };
  }
  return null;
}"""


def test_a_chunks_output_streams_into_the_page_while_it_runs(
    page: Page, daphne_server: str, alice: User, chatty_worker: str
) -> None:
    with transaction.atomic():
        job = services.job_create(
            owner=alice, kind=chatty_worker, params={"chunks": 1, "lines": 16, "ms": 400},
            parallelism=1,
        )  # fmt: skip
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/{job.pk}/")
    expect(page.locator("#connection")).to_have_text("live")
    # Line 1 is printed as the chunk starts; it reaches the panel while the chunk runs on.
    seen = page.wait_for_function(OUTPUT_LINE_SEEN, arg=[1], polling="raf").json_value()
    assert seen["heading"] == "Chunk 0 · running", seen
    # How late a line printed while the page watches reaches it (same machine, one clock).
    since = page.evaluate("Date.now() / 1000")
    line = page.wait_for_function(OUTPUT_LINE_AFTER, arg=[since], polling="raf").json_value()
    delay = line["seenAt"] - line["printedAt"]
    print(f"a printed line was on the page {delay:.2f} s after print()")
    assert delay < 2.0
    # Live output never takes focus: a reader in the panel stays there as lines come.
    panel = page.get_by_role("region", name="Output")
    panel.focus()
    page.wait_for_function(OUTPUT_LINE_SEEN, arg=[3], polling="raf")
    expect(panel).to_be_focused()
    # The inspector follows the chosen chunk's output too.
    page.locator("#chunk-canvas").click(position={"x": 8, "y": 8})  # chunk 0's square
    expect(page.locator("#chunk-option")).to_have_attribute("data-index", "0")
    inspector = page.locator("#chunk-inspector")
    expect(inspector.locator("#inspector-output")).to_contain_text("line 4 of chunk 0 ")
    # The CPU and memory timeline fills in too, said in words beside its charts.
    expect(page.locator("#resources-summary")).to_contain_text("1 process; peak ")
    assert_page_is_sound(page, "a job page with its output streaming")
    screenshot(page, "job-output.png")
    page.set_viewport_size({"width": 360, "height": 800})
    assert_page_is_sound(page, "a job page with its output streaming, 360 px wide")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(inspector.locator("#inspector-output")).to_contain_text("line 16 of chunk 0 ")
    # Once it ended: its memory and CPU time in the inspector, the job's peak, the timeline.
    figures = inspector.locator("#inspector-figures")
    expect(figures).to_contain_text(re.compile(r"Peak memory\s*\d+(\.\d)? MiB \(\+"))
    expect(figures).to_contain_text(re.compile(r"CPU time\s*user \d+\.\d\d s"))
    expect(page.locator("#timings")).to_contain_text(re.compile(r"Peak memory\s*\d+"))
    expect(page.locator("#resources-summary")).to_have_text(
        re.compile(r"^1 process; peak \d+(\.\d)? MiB; mean CPU \d+ %$")
    )
    page.get_by_text("CPU and memory per process as a table").click()
    expect(page.locator("#resources-rows tr")).to_have_count(1)
    assert_page_is_sound(page, "an ended job with its output and timeline, 360 px wide")
    # A page opened after the chunk ended reads its output from the API.
    page.reload()
    expect(page.locator("#output-blocks pre").first).to_contain_text("line 16 of chunk 0 ")


def test_a_hung_broker_is_announced_on_the_page_and_it_recovers_by_itself(
    page: Page, child_env: dict[str, str], alice: User, tmp_path: Path
) -> None:
    redis_server = stack.EmbeddedRedis(
        root=tmp_path / "redis", port=stack.free_port(), persist=False
    )
    redis_server.start()
    assert redis_server.process is not None
    server, base_url = start_daphne({**child_env, "REDIS_URL": redis_server.url()})
    try:
        job = make_ended_job(alice)
        log_in(page, base_url, "alice", "alice-password-1")
        page.goto(f"{base_url}/jobs/{job.pk}/")
        connection = page.locator("#connection")
        expect(connection).to_have_text("live")
        redis_server.process.send_signal(signal.SIGSTOP)
        # Said politely in the status region, within a few seconds, and the page stays sound.
        expect(page.get_by_role("status").filter(has_text="broker unavailable")).to_have_text(
            "broker unavailable — updates paused", timeout=8_000
        )
        expect(page.locator("#connection[data-state=paused]")).to_be_visible()
        assert_page_is_sound(page, "a job page while the broker hangs")
        redis_server.process.send_signal(signal.SIGCONT)
        expect(connection).to_have_text("live", timeout=10_000)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
        server.stop()
        redis_server.stop()


def test_api_docs_list_every_operation_under_the_sites_policy(
    browser: Browser, daphne_server: str
) -> None:
    """Swagger UI renders from our own files under the site's Content-Security-Policy (no
    'unsafe-inline'), one block per operation of the served schema, and passes axe."""
    document = httpx.get(f"{daphne_server}/api/schema/?format=json").json()
    methods = {"get", "put", "post", "delete", "patch"}
    operations = sum(1 for item in document["paths"].values() for m in item if m in methods)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        response = page.goto(f"{daphne_server}/api/docs/")
        assert response is not None
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        expect(page.locator(".opblock")).to_have_count(operations)
        assert operations >= 13
        assert_page_is_sound(page, "/api/docs/")
        screenshot(page, "api-docs.png")
        # An operation opened (its parameters, examples and responses), on a phone.
        page.locator(".opblock-summary-control").first.click()
        expect(page.locator(".opblock-body").first).to_be_visible()
        page.set_viewport_size({"width": 390, "height": 844})
        assert_page_is_sound(page, "/api/docs/ with an operation open, on a phone")
    finally:
        context.close()


def test_schedules_page_by_keyboard_on_a_phone(page: Page, daphne_server: str, alice: User) -> None:
    """Issue 23: "Schedule this" on a job's page, a cron schedule saved by keyboard (a bad
    expression first: its error beside the field), listed, turned off; axe-clean at 360 px."""
    job = make_job(alice, "burn", committed=True, chunks=1, ms=1)
    page.set_viewport_size({"width": 360, "height": 800})
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/{job.pk}/")
    page.get_by_role("link", name="Schedule this").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New schedule")).to_be_visible()
    assert_page_is_sound(page, "the new schedule form at 360 px")
    page.get_by_label("Name").fill("nightly burn")
    page.get_by_label("Runs").select_option("cron")
    page.get_by_label("Cron expression").fill("0 25 * * *")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Time zone").press("Enter")
    expect(page.get_by_text("Not a cron expression")).to_be_visible()
    assert_page_is_sound(page, "the schedule form with an error at 360 px")
    page.get_by_label("Cron expression").fill("0 3 * * *")
    page.get_by_label("Cron expression").press("Enter")
    expect(page.get_by_role("heading", name="Schedule “nightly burn”")).to_be_visible()
    expect(page.locator("#schedule-state")).to_have_text("on")
    assert_page_is_sound(page, "a schedule's page at 360 px")
    page.get_by_role("button", name="Turn off").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#schedule-state")).to_have_text("off")
    page.get_by_role("link", name="Schedules", exact=True).click()
    expect(page.get_by_role("cell", name="nightly burn")).to_be_visible()
    assert_page_is_sound(page, "the schedules list at 360 px")
    screenshot(page, "schedules.png")


def test_a_3x3_sweep_by_keyboard_is_one_history_row_and_charts_a_figure(
    browser: Browser, page: Page, daphne_server: str, alice: User
) -> None:
    """Issue 23's must-show: a 3 × 3 sweep creates 9 jobs, appears as one unit in history,
    and its page charts a figure against a parameter (live, as its runs finish)."""
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    page.locator("#sweep-mode").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New sweep")).to_be_visible()
    page.get_by_label("Chunks").fill("1, 2, 3")
    page.get_by_label("Milliseconds per chunk").fill("10, 20, 30")
    page.get_by_label("Milliseconds per chunk").press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"Sweep #\d+"))).to_be_visible()
    sweep_path = page.url.removeprefix(daphne_server)
    sweep_id = int(sweep_path.strip("/").split("/")[-1])
    assert Job.objects.filter(sweep_id=sweep_id).count() == 9
    rows = page.locator("#sweep-table tbody tr")
    expect(rows).to_have_count(9)
    # Live: the runs end and the chart fills in without a reload.
    expect(page.locator("#sweep-status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#sweep-chart-note")).to_have_text(re.compile(r"^9 of 9 runs"))
    chart = "Chart.getChart('sweep-chart')"
    page.wait_for_function(f"{chart}.data.datasets.reduce((n, d) => n + d.data.length, 0) === 9")
    assert page.evaluate(f"{chart}.options.scales.x.title.text") == "chunks"
    assert page.evaluate(f"{chart}.data.datasets.map((d) => d.label)") == [
        "ms = 10",
        "ms = 20",
        "ms = 30",
    ]
    # Any figure against any swept parameter, chosen by keyboard.
    page.locator("#sweep-chart-x").focus()
    page.keyboard.press("ArrowDown")
    page.locator("#sweep-chart-y").select_option("cpu_seconds")
    assert page.evaluate(f"{chart}.options.scales.x.title.text") == "ms"
    assert page.evaluate(f"{chart}.options.scales.y.title.text") == "CPU time (s)"
    # Sortable by keyboard: by ms, descending after a second press.
    heading = page.locator('#sweep-table th:has(button[data-sort="params.ms"])')
    heading.locator("button").focus()
    page.keyboard.press("Enter")
    expect(heading).to_have_attribute("aria-sort", "ascending")
    page.keyboard.press("Enter")
    expect(heading).to_have_attribute("aria-sort", "descending")
    expect(rows.first.locator("td").nth(1)).to_have_text("30")
    assert page.evaluate("document.activeElement.dataset.sort") == "params.ms"
    csv_url = page.locator("#sweep-export-csv").get_attribute("href")
    exported = page.request.get(f"{daphne_server}{csv_url}").text().splitlines()
    assert exported[0].startswith("index,params.chunks,params.ms,")
    assert len(exported) == 10
    screenshot(page, "sweep.png")
    # History: one row for the sweep, linking to its page, none for its nine jobs.
    page.goto(f"{daphne_server}/history/")
    sweep_row = page.locator(f'tr[data-sweep-id="{sweep_id}"]')
    expect(sweep_row).to_have_count(1)
    expect(sweep_row).to_contain_text("9/9 jobs")
    expect(page.locator("tr[data-job-id]")).to_have_count(0)
    sweep_row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=f"Sweep #{sweep_id}")).to_be_visible()
    cookies = page.context.cookies()
    for name, options in [
        ("desktop", {"viewport": {"width": 1280, "height": 900}}),
        ("phone", {"viewport": {"width": 360, "height": 740}, "is_mobile": True}),
    ]:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        context.add_init_script(CSP_WATCH)
        context.add_cookies(cookies)  # type: ignore[arg-type]
        tab = context.new_page()
        for path in (sweep_path, "/sweeps/new/?kind=burn", "/history/"):
            tab.goto(f"{daphne_server}{path}")
            assert_page_is_sound(tab, f"{path} ({name})")
        context.close()


def test_compare_chosen_jobs_by_keyboard_on_a_phone(
    page: Page, daphne_server: str, alice: User
) -> None:
    """Issue 23, item 6: tick jobs in History and compare them, keyboard only; the page
    marks differing parameters, draws chunk times and each task stream, passes axe and
    fits 360 px."""
    log_in(page, daphne_server, "alice", "alice-password-1")
    first = ended_job(page, daphne_server, alice, {"chunks": 3, "ms": 40}, "succeeded")
    second = ended_job(page, daphne_server, alice, {"chunks": 5, "ms": 40}, "succeeded")
    page.goto(f"{daphne_server}/history/")
    # The compare column and the code lines keep History within 1280 px (issue 22).
    table, room = page.evaluate(
        "(() => { const t = document.querySelector('table.history');"
        " return [t.scrollWidth, t.parentElement.clientWidth]; })()"
    )
    assert table <= room, f"History's table is {table} px wide in {room} px"
    for job_id in (first, second):
        box = page.get_by_label(f"Compare job #{job_id}")
        box.focus()
        page.keyboard.press("Space")
        expect(box).to_be_checked()
    page.get_by_role("button", name="Compare selected").focus()
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name=f"Compare jobs #{first}, #{second}")).to_be_visible()
    differs = page.locator("#compare-params tr.differs th")
    expect(differs).to_have_count(1)
    expect(differs).to_contain_text("Chunks")
    for job_id, chunks in ((first, 3), (second, 5)):
        stream = page.get_by_role("img", name=re.compile(f"Timeline of {chunks} chunks on"))
        expect(stream).to_have_attribute("data-running", "0")
        expect(page.locator(f"#stream-{job_id}")).to_be_visible()
    page.wait_for_function(
        "globalThis.Chart && Chart.getChart(document.getElementById('chunk-times-chart'))"
    )
    assert (
        page.evaluate(
            "Chart.getChart(document.getElementById('chunk-times-chart')).data.datasets.length"
        )
        == 2
    )
    assert_page_is_sound(page, "compare jobs (1280 px)")
    screenshot(page, "compare-runs.png")

    page.set_viewport_size({"width": 360, "height": 800})
    page.reload()
    expect(page.locator("#compare-params")).to_be_visible()
    assert_page_is_sound(page, "compare jobs (360 px)")
    page.goto(f"{daphne_server}/history/compare/runs/?job={first}")
    expect(page.get_by_role("alert")).to_contain_text("Choose at least two jobs")
    assert_page_is_sound(page, "compare jobs refused")
