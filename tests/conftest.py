from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from jobs import events
from jobs.models import Job
from project import stack

VENV_BIN = Path(sys.executable).parent


# --- people ------------------------------------------------------------------------------------


@pytest.fixture
def alice(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def mallory(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("mallory", password="mallory-password-1")


@pytest.fixture
def staff(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("sam", password="sam-password-1", is_staff=True)


@pytest.fixture
def alice_api(alice: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def mallory_api(mallory: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(mallory)
    return client


# --- real processes -------------------------------------------------------------------------


class ServerProcess:
    """A child process whose output is collected, so tests can await a line from it."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: deque[str] = deque(maxlen=2000)
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            args,
            cwd=stack.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line.rstrip())
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, needle: str, timeout: float = 60) -> None:
        with self._seen:
            found = self._seen.wait_for(
                lambda: (
                    any(needle in line for line in self.lines) or self.process.poll() is not None
                ),
                timeout=timeout,
            )
        if not found or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.name} never printed {needle!r}:\n" + self.output())

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _test_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    s = connection.settings_dict
    return f"postgresql://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture(scope="session")
def child_env(django_db_setup: None) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = _test_database_url()
    env["PYTHONUNBUFFERED"] = "1"
    env["COREBOARD_CHUNK_MAX_RETRIES"] = "2"
    return env


@pytest.fixture(scope="session")
def celery_worker(child_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A real `celery worker --pool=prefork` with two child processes."""
    worker = ServerProcess(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "project",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{uuid.uuid4().hex[:8]}@%h",
        ],
        child_env,
        "celery worker",
    )
    worker.wait_for_line("ready.")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def daphne_server(child_env: dict[str, str]) -> Iterator[str]:
    """A real daphne serving project.asgi on a free port; yields its base URL."""
    port = stack.free_port()
    server = ServerProcess(
        [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        child_env,
        "daphne",
    )
    server.wait_for_line("Listening on TCP address")
    yield f"http://127.0.0.1:{port}"
    server.stop()


# --- awaiting job states through the channel layer ---------------------------------------------


def wait_until(job_id: int, check: Callable[[], Any], *, timeout: float = 90) -> Any:
    """Block until `check()` (run against the database) returns something truthy.

    Woken by the job's progress events on the channel layer; since events may be
    coalesced or dropped, the database is re-read at least every second either way.
    """

    async def _wait() -> Any:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(events.job_group(job_id), channel)
        try:
            async with asyncio.timeout(timeout):
                while not (value := await database_sync_to_async(check)()):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):
                            await layer.receive(channel)
                return value
        finally:
            await layer.group_discard(events.job_group(job_id), channel)

    return async_to_sync(_wait)()


def wait_for_job(job_id: int, *, until: set[str], timeout: float = 90) -> Job:
    def check() -> Job | None:
        job = Job.objects.get(pk=job_id)
        return job if job.status in until else None

    return wait_until(job_id, check, timeout=timeout)
