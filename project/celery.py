"""The Celery app: configuration comes from Django settings (namespace CELERY)."""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import Celery, signals
from django.db import close_old_connections

from launcher.parent import exit_with_parent

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("coreboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The engine's Celery adapters (jobs.engine.tasks), named: autodiscovery by a related name
# would look for `<app>.engine.tasks` in every installed app and stop at daphne's missing
# `daphne.engine` (Celery ignores only a missing last part).
app.autodiscover_tasks(["jobs.engine"])
# The services' adapters (a schedule's fire): `jobs.tasks`.
app.autodiscover_tasks(["jobs"])


@signals.worker_init.connect
def worker_ends_with_make_run(**kwargs: Any) -> None:
    """A worker started by `make run` ends with it, however it ends (launcher.parent): a
    cold shutdown (SIGQUIT), as at a reload, so that the next `make run` starts its own at
    once; the chunks it ran are handed back by their leases. Elsewhere a no-op."""
    exit_with_parent(signal.SIGQUIT)


@signals.beat_init.connect
def beat_ends_with_make_run(**kwargs: Any) -> None:
    """Beat started by `make run` ends with it: SIGTERM, its own clean stop (it saves its
    schedule's state). Not SIGQUIT, which beat does not handle: Linux's default for it
    dumps core, which took a fresh machine's beat over 20 s and leaves a file of the
    process's size behind."""
    exit_with_parent(signal.SIGTERM)


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_db_connections(**kwargs: Any) -> None:
    """Treat each task like a request: drop broken or expired connections, keep the rest.

    With CELERY_DB_REUSE_MAX set, Celery no longer closes connections around tasks; this
    keeps CONN_MAX_AGE and the health checks working as they do for HTTP requests.
    """
    close_old_connections()
