"""Starts the services the suite needs before Django is configured, and stops them after.

Loaded with `-p tests.services_plugin` (see pyproject.toml) so its hook runs before
pytest-django imports settings. Without DATABASE_URL / REDIS_URL the suite gets its own
PostgreSQL cluster (var/test/pg, kept between runs) and Redis on free ports, so it never
touches the data of a `make run` beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coreconf import paths
from launcher import stack

# COREBOARD_TEST_VAR lets two suites run side by side (each needs its own cluster).
TEST_VAR = Path(os.environ.get("COREBOARD_TEST_VAR", str(paths.VAR_DIR / "test")))
TEST_MEDIA_ROOT = TEST_VAR / "media"


# The services this suite started, for the fault tests that restart them.
SERVICES: list[stack.PrivateServices] = []


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Persistent connections held by asgiref's worker threads would keep pytest-django
    # from dropping the test database at the end.
    os.environ.setdefault("DB_CONN_MAX_AGE", "0")
    # Settings only read Django's key; the suite's daphne and workers get it from here.
    os.environ.setdefault("SECRET_KEY", paths.django_secret_key())
    SERVICES.append(
        stack.start_private_services(TEST_VAR, secret_name="test-pg-password", persist=False)
    )
    for stop in SERVICES[0].stops():
        early_config.add_cleanup(stop)
