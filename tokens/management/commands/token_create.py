"""`manage.py token_create USER [--name N] [--days D]`: an API token for scripts and ops."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens import services


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="created with manage.py")
        parser.add_argument(
            "--days", type=int, default=None, help="days until it expires (0: never)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()._default_manager
        user = users.filter(**{get_user_model().USERNAME_FIELD: options["username"]}).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        if options["days"] is not None and options["days"] < 0:
            raise CommandError("--days must be 0 (never expires) or more.")
        new = services.token_create(
            user=user, name=options["name"], expires_in_days=options["days"]
        )
        self.stdout.write(new.key)
