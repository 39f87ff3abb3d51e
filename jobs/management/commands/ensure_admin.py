"""Create the admin account once, with a generated password kept under var/secrets."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from coreconf import config, paths


class Command(BaseCommand):
    help = "Ensure an admin account exists and print where its password is."

    def handle(self, *args: Any, **options: Any) -> None:
        username = config.string("COREBOARD_ADMIN_USER")
        given = config.string("COREBOARD_ADMIN_PASSWORD")
        password = given or paths.read_or_create_secret("admin-password")
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            users.create_superuser(username=username, email="", password=password)
        elif given and not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        # The password itself is never printed: terminals and logs keep it.
        where = "COREBOARD_ADMIN_PASSWORD" if given else str(paths.secret_file("admin-password"))
        self.stdout.write(f"Log in as {username!r} with the password in {where}")
