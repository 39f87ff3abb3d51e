"""Write the reference pages generated from code, or check that they are current.

`python manage.py reference` rewrites each page in REFERENCES from its generator;
`--check` writes nothing and fails while a committed page differs from its generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from project import config, paths

# (path in the checkout, the function that returns its text): one pair per generated page.
REFERENCES: list[tuple[str, Callable[[], str]]] = [
    (config.REFERENCE_PATH, config.reference_markdown),
]


def stale_references() -> list[str]:
    """The paths of the pages in REFERENCES that differ from what their generator returns."""
    stale = []
    for relative, generate in REFERENCES:
        path = paths.BASE_DIR / relative
        current = path.read_text() if path.exists() else ""
        if current != generate():
            stale.append(relative)
    return stale


class Command(BaseCommand):
    help = "Regenerate the references made from code (docs/configuration.md, ...)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; fail if a committed reference is out of date",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stale = stale_references()
        if options["check"]:
            if stale:
                raise CommandError(
                    f"out of date: {', '.join(stale)}; run `python manage.py reference`"
                )
            return
        for relative, generate in REFERENCES:
            if relative in stale:
                (paths.BASE_DIR / relative).write_text(generate())
                self.stdout.write(f"wrote {relative}")
