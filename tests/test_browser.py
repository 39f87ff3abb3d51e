"""The job pages in Debian's Chromium (Playwright), against real daphne and prefork workers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.processes import ServerProcess

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
    expect(page.get_by_text("Must be greater than start (100).")).to_be_visible()


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
