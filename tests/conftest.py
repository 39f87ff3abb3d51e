from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from tests.processes import ServerProcess, start_celery_worker, start_daphne

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
    worker = start_celery_worker(child_env, concurrency=2)
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def daphne_server(child_env: dict[str, str]) -> Iterator[str]:
    """A real daphne serving project.asgi on a free port; yields its base URL."""
    server, url = start_daphne(child_env)
    yield url
    server.stop()
