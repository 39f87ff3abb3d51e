"""The job pages in Debian's Chromium (Playwright), against real daphne and prefork workers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from playwright.sync_api import Browser, Page, expect, sync_playwright

from jobs import services
from tests.processes import ServerProcess, start_daphne

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_DIR = os.environ.get("COREBOARD_SCREENSHOT_DIR")


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
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


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
    expect(page.locator(".cell.chunk-done").first).to_be_visible()
    expect(page.locator("#cancel-button")).to_be_visible()
    screenshot(page, "job-running.png")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#result")).to_contain_text('"chunks": 6')
    expect(page.locator("#timings")).to_contain_text("Speedup")
    expect(page.locator("#cancel-button")).to_be_hidden()
    timeline = page.get_by_role(
        "img", name=re.compile("Timeline of 6 chunks on 2 worker processes")
    )
    expect(timeline).to_have_attribute("data-running", "0")
    expect(page.locator(".cell.chunk-done")).to_have_count(6)
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
    expect(page.get_by_text("Must be greater than start (100).", exact=True)).to_be_visible()


def test_cancel_a_running_job_from_its_page(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    page.get_by_label("Chunks").fill("4")
    page.get_by_label("Milliseconds per chunk").fill("60000")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator(".cell.chunk-running")).to_have_count(2)
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.locator(".cell.chunk-cancelled")).to_have_count(4, timeout=10_000)


def test_mandelbrot_fills_in_band_by_band(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=mandelbrot")
    page.get_by_label("Width").fill("360")
    page.get_by_label("Height").fill("240")
    page.get_by_label("Max iter").fill("400")
    page.get_by_label("Chunks").fill("12")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#preview img").first).to_be_visible()
    screenshot(page, "mandelbrot-running.png")
    expect(page.locator("#preview img")).to_have_count(12, timeout=60_000)
    result = page.get_by_role("img", name="Result of job")
    expect(result).to_be_visible()
    page.wait_for_function("document.getElementById('result-file-image').naturalWidth === 360")
    expect(page.get_by_role("link", name="Download")).to_have_attribute(
        "href", re.compile(r"/api/jobs/\d+/result-file/\?download=1")
    )


def test_wordcount_with_a_file_from_the_form(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    text = tmp_path / "poem.txt"
    text.write_text("the cat and the hat\nthe end\n")
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=wordcount")
    page.get_by_label("Upload").set_input_files(str(text))
    page.get_by_label("Chunks").fill("3")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#result")).to_contain_text('"total_words": 7')
    expect(page.locator("#result")).to_contain_text('"the",\n      3')


def test_wordcount_form_rejects_a_binary_file(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\x00\x00")
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=wordcount")
    page.get_by_label("Upload").set_input_files(str(binary))
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_text("The file looks binary")).to_be_visible()


def test_overview_shows_running_jobs_and_the_cluster(
    page: Page, daphne_server: str, alice: User
) -> None:
    with transaction.atomic():
        job = services.job_create(
            owner=alice, kind="burn", params={"chunks": 6, "ms": 1500}, parallelism=2
        )
    log_in(page, daphne_server, "alice", "alice-password-1")
    card = page.locator(f'#active-jobs li[data-job-id="{job.pk}"]')
    expect(card).to_be_visible()
    expect(card.get_by_role("progressbar")).to_be_visible()
    expect(page.locator("#processes .proc-busy")).to_have_count(2, timeout=15_000)
    expect(page.locator("#nodes canvas")).to_have_count(1)
    expect(card).to_contain_text("chunks/s", timeout=15_000)
    screenshot(page, "overview.png")
    expect(page.locator(f'#recent-jobs tr[data-job-id="{job.pk}"]')).to_be_visible(timeout=60_000)
    expect(card).to_have_count(0)


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
        server, _ = start_daphne(child_env, port=port)
        expect(connection).to_have_text("live", timeout=20_000)
        progress = page.get_by_role("progressbar", name="Job progress")
        expect(progress).to_have_attribute("aria-valuenow", "100", timeout=60_000)
        expect(page.locator("#job-status")).to_have_text("succeeded")
        expect(page.locator(".cell.chunk-done")).to_have_count(8)
    finally:
        server.stop()


def test_new_job_form_previews_the_chunk_count(page: Page, daphne_server: str, alice: User) -> None:
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=burn")
    preview = page.locator("#chunk-preview")
    expect(preview).to_have_attribute("aria-live", "polite")
    expect(preview).to_have_text("This job will have 8 chunks")
    page.get_by_label("Chunks").fill("6")
    expect(preview).to_have_text("This job will have 6 chunks")
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
    retry = page.get_by_role("button", name="Retry failed chunks")
    expect(retry).to_be_hidden()
    expect(page.locator("#job-status")).to_have_text("failed", timeout=60_000)
    # The button appears when the job ends, without a reload.
    expect(retry).to_be_visible()
    expect(page.get_by_role("link", name="Delete")).to_be_visible()
    retry.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("retrying its failed chunks")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("failed", timeout=60_000)
    expect(page.locator(".cell.chunk-failed").first).to_have_attribute(
        "title", re.compile(r"attempts 3\b")
    )


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
    expect(page.locator("#chunk-preview")).to_have_text("This job will have 2 chunks")
    page.get_by_label("Chunks").fill("3")
    expect(page.locator("#chunk-preview")).to_have_text("This job will have 3 chunks")
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(".cell.chunk-done")).to_have_count(3)
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
    expect(page.locator(".cell.retried")).to_have_count(1)
    page.locator(".cell").first.focus()
    expect(page.locator("#chunk-details")).to_contain_text("attempts 3")


def test_uploads_page_deletes_by_keyboard(
    page: Page, daphne_server: str, alice: User, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("some words to count\n")
    log_in(page, daphne_server, "alice", "alice-password-1")
    page.goto(f"{daphne_server}/jobs/new/?kind=wordcount")
    page.get_by_label("Upload").set_input_files(str(text))
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_text("succeeded").first).to_be_visible()
    page.goto(f"{daphne_server}/uploads/")
    expect(page.get_by_role("cell", name=text.name, exact=True)).to_be_visible()
    page.get_by_role("button", name=f"Delete {text.name}").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Upload '{text.name}' deleted.")).to_be_visible()
    expect(page.get_by_text("You have not uploaded anything.")).to_be_visible()
