"""`manage.py kinds`: the job kinds this process loaded, those that failed, what to watch."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs import kinds


class Command(BaseCommand):
    help = (
        "List the job kinds found (COREBOARD_JOB_KINDS, `coreboard.kinds` entry points, the "
        "kinds folder) and the kind modules that failed to load, with file:line and error. "
        "`make run` prints the failures and watches --json's `sources` to reload."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help="one JSON object: kinds, failures (with tracebacks), sources (to watch)",
        )
        parser.add_argument(
            "--failures", action="store_true", help="only the failures, one line each"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        failures = kinds.load_failures()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "kinds": [
                            {
                                "name": kind.name,
                                "label": kind.label,
                                "module": type(kind).__module__,
                            }
                            for kind in kinds.all_kinds()
                        ],
                        "failures": failures,
                        "sources": [str(path) for path in kinds.kind_sources()],
                    }
                )
            )
            return
        if not options["failures"]:
            for kind in kinds.all_kinds():
                self.stdout.write(f"{kind.name:<20} {kind.label}  ({type(kind).__module__})")
        for failure in failures:
            self.stdout.write(kinds.failure_line(failure))
