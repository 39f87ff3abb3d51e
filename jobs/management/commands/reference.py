"""Write the reference pages generated from code, or check that the committed ones are current."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from coreconf import config
from jobs import reference

# Each generated page (relative to the repository root) and the function that writes its
# text. A new generated reference adds a line here; the tests check every one.
REFERENCES: list[tuple[str, Callable[[], str]]] = [
    ("docs/api-reference.md", reference.api_reference),
    ("docs/protocol.md", reference.protocol_reference),
    (config.REFERENCE_PATH, config.reference_markdown),
]


def stale_references() -> list[str]:
    """The pages of REFERENCES whose committed text differs from what the code generates."""
    return [
        path
        for path, generate in REFERENCES
        if not (Path(settings.BASE_DIR) / path).is_file()
        or (Path(settings.BASE_DIR) / path).read_text() != generate()
    ]


class Command(BaseCommand):
    help = (
        "Generate the reference pages in docs/ from the code (API schema, wire protocol); "
        "--check only reports the pages that are out of date and fails if there are any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; exit with an error naming every page that is out of date",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            stale = stale_references()
            if stale:
                raise CommandError("out of date (run `manage.py reference`): " + ", ".join(stale))
            return
        for path, generate in REFERENCES:
            target = Path(settings.BASE_DIR) / path
            text = generate()
            if not target.is_file() or target.read_text() != text:
                target.write_text(text)
                self.stdout.write(f"wrote {path}")
