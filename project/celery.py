"""The Celery app: configuration comes from Django settings (namespace CELERY)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("coreboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The engine's Celery adapters (jobs.engine.tasks), found where the engine keeps them.
# The Celery adapters live in jobs/engine/tasks.py; `related_name="engine.tasks"` over every
# installed app would try daphne.engine.tasks and the like, and fail on the first.
app.autodiscover_tasks(["jobs.engine"])


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_db_connections(**kwargs: Any) -> None:
    """Treat each task like a request: drop broken or expired connections, keep the rest.

    With CELERY_DB_REUSE_MAX set, Celery no longer closes connections around tasks; this
    keeps CONN_MAX_AGE and the health checks working as they do for HTTP requests.
    """
    from django.db import close_old_connections

    close_old_connections()
