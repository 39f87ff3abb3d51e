"""Where Coreboard keeps its files and secrets, and the URLs of its embedded services.

Both Django's settings and the launcher (`make run`, `make worker`, the join command) need
these; they live here, below both, so that settings never import the launcher and the
launcher's embedded services (launcher.stack) and its join command (launcher.join) share
one definition. Nothing here imports Django or anything heavy.

Reading a secret never creates one: `django_secret_key()` is the one place that creates
Django's key, called by the programs that start Django (manage.py, `make run`,
`make worker`, the test suite), not by importing settings.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from pathlib import Path

from coreconf import config

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything `make run` keeps (data, secrets, media); COREBOARD_VAR_DIR moves it.
VAR_DIR = Path(config.string("COREBOARD_VAR_DIR") or BASE_DIR / "var")
SECRETS_DIR = VAR_DIR / "secrets"

# The embedded services' accounts and the files under var/secrets holding their passwords.
EMBEDDED_PG_USER = "coreboard"
EMBEDDED_PG_DATABASE = "coreboard"
PG_PASSWORD_SECRET = "pg-password"  # noqa: S105 - the name of a file under var/secrets
REDIS_PASSWORD_SECRET = "redis-password"  # noqa: S105 - a file name
DJANGO_SECRET_KEY_SECRET = "django-secret-key"  # noqa: S105 - a file name


def media_root() -> Path:
    """Uploads and result files: MEDIA_ROOT, or var/media."""
    return Path(config.string("MEDIA_ROOT") or VAR_DIR / "media")


def secret_file(name: str) -> Path:
    return SECRETS_DIR / name


def read_secret(name: str) -> str:
    """The secret stored under var/secrets/<name>, or "" when there is none."""
    path = secret_file(name)
    return path.read_text().strip() if path.exists() else ""


def read_or_create_secret(name: str, *, nbytes: int = 24, min_length: int = 0) -> str:
    """Return the secret stored under var/secrets/<name>, creating it (0600) if missing or
    shorter than `min_length` (a key kept from an older version)."""
    path = secret_file(name)
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= min_length:
            return value
        path.unlink()
    SECRETS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def django_secret_key() -> str:
    """SECRET_KEY, or the key kept in var/secrets, created on first use.

    A fresh clone then needs no step of its own before `make run`, `make test` or
    `manage.py`; settings only read the file (an empty key is refused by Django where it
    is used). 64 characters: Django's deploy check asks for at least 50.
    """
    return config.string("SECRET_KEY") or read_or_create_secret(
        DJANGO_SECRET_KEY_SECRET, nbytes=48, min_length=50
    )


def _credentials_url(scheme: str, user: str, password: str, host: str, port: int, path: str) -> str:
    # Passwords may hold any character: URL-encode them (the generated ones need not).
    credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return f"{scheme}://{credentials}@{host}:{port}/{path}"


def postgres_url(*, user: str, password: str, host: str, port: int, database: str) -> str:
    return _credentials_url("postgresql", user, password, host, port, database)


def redis_url(*, password: str, host: str, port: int, db: int = 0) -> str:
    return _credentials_url("redis", "", password, host, port, str(db))


def embedded_postgres_url(
    *,
    port: int | None = None,
    secret_name: str = PG_PASSWORD_SECRET,
    user: str = EMBEDDED_PG_USER,
    database: str = EMBEDDED_PG_DATABASE,
) -> str:
    """The embedded cluster's URL on loopback (its password read from var/secrets)."""
    return postgres_url(
        user=user,
        password=read_secret(secret_name),
        host="127.0.0.1",
        port=config.integer("COREBOARD_PG_PORT") if port is None else port,
        database=database,
    )


def embedded_redis_url(
    *, port: int | None = None, secret_name: str = REDIS_PASSWORD_SECRET, db: int = 0
) -> str:
    """The embedded Redis's URL on loopback (without credentials while it has none)."""
    password = read_secret(secret_name)
    port = config.integer("COREBOARD_REDIS_PORT") if port is None else port
    if not password:
        return f"redis://127.0.0.1:{port}/{db}"
    return redis_url(password=password, host="127.0.0.1", port=port, db=db)
