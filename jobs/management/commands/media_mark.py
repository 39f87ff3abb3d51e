"""Mark MEDIA_ROOT as the shared media directory of this database (the main machine)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs.engine import preflight as worker_preflight


class Command(BaseCommand):
    help = (
        "Write MEDIA_ROOT/.coreboard-cluster with this database's cluster id; workers refuse "
        "to start without it (make run does this at every start)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        path = worker_preflight.media_marker_write()
        if options["verbosity"] > 1:
            self.stdout.write(f"wrote {path}")
