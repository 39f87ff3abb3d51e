"""Delete stored upload and result files that no row references."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.services.uploads import PRUNE_MIN_AGE_S, media_prune


class Command(BaseCommand):
    help = "Delete files under MEDIA_ROOT/uploads and /results that no upload or job references."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--min-age",
            type=float,
            default=PRUNE_MIN_AGE_S,
            help="only files older than this many seconds (default: an hour)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = media_prune(min_age_s=options["min_age"])
        for name in deleted:
            self.stdout.write(f"deleted {name}")
        self.stdout.write(f"{len(deleted)} unreferenced file(s) deleted")
