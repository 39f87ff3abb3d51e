from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, TransactionTestCase, override_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from coreconf import paths
from jobs import kinds
from jobs.engine import bookkeeping, events, redis_clients
from jobs.engine import preflight as worker_preflight
from jobs.kinds import loading as kinds_loading
from jobs.models import Job
from tests.factories import (
    api_client_for,
    chunk_statuses,
    client_for,
    complete_next,
    fail_next,
    make_job,
    start,
)
from tests.fake_redis import FakeRedis
from tests.processes import ServerProcess, start_celery_worker, start_daphne
from tests.services_plugin import TEST_MEDIA_ROOT, TEST_VAR
from tests.waiting import poll_until

DOCS_KINDS_DIR = TEST_VAR / "docs-kinds"
# Small, so tests can send a body over the limit to the real daphne cheaply.
CHILD_UPLOAD_MAX_BYTES = 256 * 1024


# --- layers ------------------------------------------------------------------------------------

# Each test belongs to exactly one (pyproject.toml describes them); `make test-fast` runs the
# first four, which need no browser and start no process.
LAYERS = ("services", "api", "pages", "consumers", "integration", "browser")
# A test of a layer lives in tests/<layer>/, so that a folder selects what a marker does.
TESTS_DIR = Path(__file__).resolve().parent
PROCESS_LAYERS = {"integration", "browser"}
# Fixtures that start real workers or daphne: only tests of a process layer may use them.
PROCESS_FIXTURES = {"child_env", "celery_worker", "daphne_server"}


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Refuse the run when a test has no layer, several, one that is not its folder's, or
    starts processes outside the process layers: a new module must say where it belongs
    (`pytestmark = pytest.mark.api`) and sit there (tests/api/).

    Then, after the other plugins' ordering (pytest-django's), the process layers go last
    (a stable sort: the order within each part stays): the suite's shared worker, started by
    the first of them, runs every committed job of a kind it has, so an in-process test's
    committed jobs must not meet it (they would end while the test counts them)."""
    problems = set()
    for item in items:
        test = item.nodeid.split("[")[0]
        layers = [mark.name for mark in item.iter_markers() if mark.name in LAYERS]
        if not layers:
            problems.add(f"{item.path.name}: no layer; add pytestmark = pytest.mark.<layer>")
        elif len(layers) > 1:
            problems.add(f"{test}: several layers {layers}; a test has one")
        elif not _in_its_folder(item.path, layers[0]):
            where = item.path.resolve().relative_to(TESTS_DIR.parent)
            problems.add(f"{where}: marked {layers[0]}, so it belongs in tests/{layers[0]}/")
        elif (
            isinstance(item, pytest.Function)
            and PROCESS_FIXTURES & set(item.fixturenames)
            and layers[0] not in PROCESS_LAYERS
        ):
            problems.add(f"{test}: starts real processes, so is integration or browser")
    if problems:
        raise pytest.UsageError(
            f"test layers ({', '.join(LAYERS)}):\n  " + "\n  ".join(sorted(problems))
        )
    yield
    items.sort(key=lambda item: any(item.get_closest_marker(layer) for layer in PROCESS_LAYERS))


def _in_its_folder(path: Path, layer: str) -> bool:
    """Whether a test module under tests/ sits in tests/<layer>/ (one elsewhere, a plugin's
    say, is not ours to place)."""
    path = path.resolve()
    return not path.is_relative_to(TESTS_DIR) or path.is_relative_to(TESTS_DIR / layer)


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """The default hasher costs ~0.5-1.5 s per user on these machines; tests that only check
    passwords in this process do not need it. Passwords that workers or daphne check must
    use the hashers those processes know, so process layers keep the default."""
    if not any(request.node.get_closest_marker(layer) for layer in PROCESS_LAYERS):
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_root(settings: Any) -> None:
    settings.MEDIA_ROOT = TEST_MEDIA_ROOT


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> None:
    """channels-redis keeps per-event-loop state (receive locks), and each test (or
    async_to_sync call) runs its own loop: the in-process consumers start with a new layer."""
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture
def in_memory_channel_layer(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels' in-process layer, for consumer unit tests: groups and messages without
    Redis (the seq counter and the cluster state still live there).

    Only the test feeds the sockets then: the engine's publisher, a thread made once per
    process with the layer of its time, is silenced rather than made to hold an in-memory
    layer that later tests would publish into.
    """
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    for name in ("job_changed", "chunks_changed", "chunk_progressed", "event_publish"):
        monkeypatch.setattr(events, name, lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Throttle counters and login failures live in the cache (Redis): none carry over.
    Nor does an earlier test's Redis timeout: one call past COREBOARD_REDIS_TIMEOUT_MS on a
    loaded machine opens this process's breaker until its probe hears Redis again (within
    about a second, redis_clients.PROBE_EVERY_S), and calls made meanwhile are refused."""
    location = str(django_settings.CACHES["default"]["LOCATION"])
    poll_until(lambda: redis_clients.usable(location), timeout=10)
    cache.clear()


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
def alice_client(alice: User) -> Client:
    return client_for(alice)


@pytest.fixture
def mallory_client(mallory: User) -> Client:
    return client_for(mallory)


@pytest.fixture
def staff_client(staff: User) -> Client:
    return client_for(staff)


@pytest.fixture
def hung_broker(settings: Any) -> Iterator[FakeRedis]:
    """The broker (and the cache) on a loopback server that accepts connections and never
    answers, as a SIGSTOPped Redis; 200 ms Redis timeouts."""
    settings.COREBOARD_REDIS_TIMEOUT_MS = 200
    server = FakeRedis()
    server.hung.set()
    settings.CELERY_BROKER_URL = server.url
    yield server
    server.close()


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Ids of jobs handed to dispatch (after commit), which sends no slot here: services
    are tested directly."""
    from jobs.engine import dispatch

    sent: list[int] = []

    def job_dispatch(*, job_id: int) -> int:
        sent.append(job_id)
        return 0

    monkeypatch.setattr(dispatch, "job_dispatch", job_dispatch)
    return sent


@pytest.fixture
def alice_api(alice: User) -> APIClient:
    return api_client_for(alice)


@pytest.fixture
def mallory_api(mallory: User) -> APIClient:
    return api_client_for(mallory)


# --- jobs ---------------------------------------------------------------------------------------


@pytest.fixture
def alice_job(alice: User) -> Job:
    """Pending: four chunks of primes below 1000."""
    return make_job(alice, "primes", start=0, stop=1000, chunks=4)


@pytest.fixture
def rates(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """The throttle rates, changeable per test (DRF reads them once, at import)."""
    changed = dict(SimpleRateThrottle.THROTTLE_RATES)
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", changed)
    return changed


@pytest.fixture
def failed_job(alice: User, dispatched: list[int]) -> Job:
    """Chunk 0 done, chunk 1 failed, chunks 2 and 3 cancelled when the job failed."""
    job = make_job(alice, chunks=4, parallelism=2)
    start(job)
    complete_next(job)
    fail_next(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert chunk_statuses(job) == {0: "done", 1: "failed", 2: "cancelled", 3: "cancelled"}
    dispatched.clear()
    return job


@pytest.fixture
def other_session() -> Iterator[psycopg.Connection]:
    """A second session, as another machine would hold."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    with psycopg.connect(**params) as other:
        yield other


@pytest.fixture
def kinds_folder(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder as COREBOARD_KINDS_DIR; the kinds registered and the load failures
    recorded during the test (`kinds.load_configured()`) are forgotten after it."""
    folder = tmp_path / "kinds"
    folder.mkdir()
    settings.COREBOARD_KINDS_DIR = folder
    monkeypatch.setattr(kinds_loading, "_failures", [])
    with kinds.temporary():
        yield folder


# --- real processes -------------------------------------------------------------------------


def _test_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    s = connection.settings_dict
    return f"postgresql://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture(scope="session")
def docs_example_kind() -> str:
    """The worked example of docs/job-kinds.md as an importable module; its name."""
    page = (paths.BASE_DIR / "docs" / "job-kinds.md").read_text()
    marker = re.search(r"<!-- example-module: (\w+) -->\s*```python\n(.*?)```", page, re.S)
    assert marker, "docs/job-kinds.md lost its example module"
    name, source = marker.groups()
    DOCS_KINDS_DIR.mkdir(parents=True, exist_ok=True)
    (DOCS_KINDS_DIR / f"{name}.py").write_text(source)
    if str(DOCS_KINDS_DIR) not in sys.path:
        sys.path.insert(0, str(DOCS_KINDS_DIR))
    importlib.import_module(name)
    return name


@pytest.fixture(scope="session")
def child_env(
    django_db_setup: None, django_db_blocker: Any, docs_example_kind: str
) -> dict[str, str]:
    """Environment of the worker and daphne processes the suite starts (their MEDIA_ROOT
    marked as the test database's, as `make run` marks its own: workers check it)."""
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=TEST_MEDIA_ROOT):
        worker_preflight.media_marker_write()
    env = dict(os.environ)
    env["DATABASE_URL"] = _test_database_url()
    env["PYTHONUNBUFFERED"] = "1"
    env["COREBOARD_CHUNK_MAX_RETRIES"] = "2"
    env["COREBOARD_UPLOAD_MAX_BYTES"] = str(CHILD_UPLOAD_MAX_BYTES)
    env["COREBOARD_JOB_KINDS"] = docs_example_kind
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DOCS_KINDS_DIR), env.get("PYTHONPATH")]))
    env["MEDIA_ROOT"] = str(TEST_MEDIA_ROOT)
    # Notifications: the suite's webhook receivers listen on 127.0.0.1 (the SSRF guard's
    # operator switch), and retries and leases are short enough to watch.
    env["COREBOARD_WEBHOOK_ALLOW_PRIVATE"] = "1"
    env["COREBOARD_WEBHOOK_TIMEOUT_S"] = "3"
    env["COREBOARD_NOTIFY_RETRY_BASE_S"] = "1"
    env["COREBOARD_NOTIFY_RETRY_MAX_S"] = "2"
    return env


@pytest.fixture(scope="session")
def celery_worker(child_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A real `celery worker --pool=prefork` with two child processes."""
    worker = start_celery_worker(child_env, concurrency=2)
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def daphne_server(child_env: dict[str, str]) -> Iterator[str]:
    """A real daphne serving project.asgi on a free port; yields its base URL."""
    server, url = start_daphne(child_env)
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def _bookkeeping_connection_closed() -> Iterator[None]:
    """A slot run by a test leaves this process's bookkeeping thread (jobs.engine.bookkeeping)
    holding a connection to the test database, which must go before the database does."""
    yield
    bookkeeping.thread_connection_close()


# --- the flush between transactional tests ------------------------------------------------------

_fixture_teardown = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]


def _fixture_teardown_retried(self: TransactionTestCase) -> None:
    """Django's flush, tried again when it deadlocks: the suite's live workers may still
    write as a test ends (a chunk's record, a job's end and its outbox rows), and a TRUNCATE
    of every table that meets such a transaction midway is the deadlock's victim."""
    for attempt in range(3):
        try:
            _fixture_teardown(self)
            return
        except CommandError as error:
            if attempt == 2 or "deadlock detected" not in str(error.__cause__):
                raise


TransactionTestCase._fixture_teardown = _fixture_teardown_retried  # type: ignore[attr-defined]
