"""Deploy settings, caching headers and the admin going through the services."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import User
from django.test import Client

from coreconf import config, paths
from jobs.models import Job
from tests.factories import make_job

pytestmark = pytest.mark.django_db

# The settings for running behind a TLS proxy (docs/security.md; coreconf/config.py).
TLS_ENV = {
    "DEBUG": "0",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto,https",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}


def check_deploy(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in TLS_ENV}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=paths.BASE_DIR,
        env=env | extra,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def deploy_checks() -> dict[str, subprocess.CompletedProcess[str]]:
    """Both `check --deploy` runs, started together: each is a Django start-up of seconds."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        with_tls = pool.submit(check_deploy, TLS_ENV)
        without = pool.submit(check_deploy, {"DEBUG": "0"})
        return {"with_tls": with_tls.result(), "without": without.result()}


@pytest.mark.pages
def test_check_deploy_is_clean_with_the_documented_tls_settings(
    deploy_checks: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    result = deploy_checks["with_tls"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # Each is declared in the settings table (so docs/configuration.md documents it), and
    # every TLS switch the table's security section has is in this documented set.
    assert set(TLS_ENV) <= set(config.SETTINGS)
    switches = {
        entry.name
        for entry in config.SETTINGS.values()
        if entry.section == "security" and entry.name.startswith(("SECURE_", "SESSION_", "CSRF_"))
    }
    assert switches <= set(TLS_ENV)


@pytest.mark.pages
def test_check_deploy_warns_without_them(
    deploy_checks: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    result = deploy_checks["without"]
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS" in result.stdout + result.stderr


@pytest.mark.pages
def test_logged_in_pages_are_not_stored(alice_client: Client) -> None:
    for path in ("/", "/history/", "/jobs/new/", "/api/jobs/"):
        response = alice_client.get(path)
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"], path


@pytest.fixture
def admin_client(django_user_model: type[User]) -> Client:
    root = django_user_model.objects.create_superuser("root", password="root-password-1")
    client = Client()
    client.force_login(root)
    return client


@pytest.mark.pages
def test_the_admin_cannot_delete_a_running_job(
    admin_client: Client, alice: User, dispatched: list[int]
) -> None:
    job = make_job(alice, chunks=2, ms=1)
    page = admin_client.get(f"/admin/jobs/job/{job.pk}/delete/")
    assert page.status_code == 403
    admin_client.post(
        "/admin/jobs/job/",
        {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"},
    )
    assert Job.objects.filter(pk=job.pk).exists()


@pytest.mark.pages
def test_the_admin_deletes_an_ended_job_through_the_service(
    admin_client: Client, alice: User, dispatched: list[int]
) -> None:
    job = make_job(alice, chunks=2, ms=1)
    admin_client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    admin_client.post(
        "/admin/jobs/job/",
        {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"},
    )
    assert not Job.objects.filter(pk=job.pk).exists()
    assert admin_client.get("/admin/jobs/chunk/1/delete/").status_code == 403
