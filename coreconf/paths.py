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

import contextlib
import json
import os
import secrets
import urllib.parse
from pathlib import Path

from coreconf import config

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything `make run` keeps (data, secrets, media); COREBOARD_VAR_DIR moves it.
VAR_DIR = Path(config.string("COREBOARD_VAR_DIR") or BASE_DIR / "var")
SECRETS_DIR = VAR_DIR / "secrets"
# What `make run` runs now (pid files, its lock) and the ports of its embedded services.
RUN_DIR = VAR_DIR / "run"
STACK_PORTS_FILE = RUN_DIR / "ports.json"

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


def stack_ports() -> dict[str, int]:
    """The ports the last `make run` of this checkout gave its embedded services, by
    setting name (COREBOARD_PG_PORT, COREBOARD_REDIS_PORT); {} before the first."""
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(STACK_PORTS_FILE.read_text())
        if isinstance(recorded, dict):
            return {str(k): int(v) for k, v in recorded.items()}
    return {}


def stack_ports_write(ports: dict[str, int]) -> None:
    """Record the embedded services' ports for the commands run later without them
    (readable by all: ports are no secret)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.chmod(0o755)
    temporary = STACK_PORTS_FILE.with_suffix(".tmp")
    temporary.write_text(json.dumps(ports, sort_keys=True) + "\n")
    temporary.chmod(0o644)
    temporary.replace(STACK_PORTS_FILE)


def embedded_port(name: str) -> int:
    """COREBOARD_PG_PORT or COREBOARD_REDIS_PORT: as given, else the port this checkout's
    `make run` last used (var/run/ports.json), else the default.

    So `manage.py` and `make worker` run without the variable reach this checkout's
    services, not whatever listens on the default port (another checkout's stack).
    """
    if config.is_set(name):
        return config.integer(name)
    return stack_ports().get(name) or config.integer(name)


def _credentials_url(scheme: str, user: str, password: str, host: str, port: int, path: str) -> str:
    # Passwords may hold any character: URL-encode them (the generated ones need not).
    credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return f"{scheme}://{credentials}@{host}:{port}/{path}"


def postgres_url(*, user: str, password: str, host: str, port: int, database: str) -> str:
    return _credentials_url("postgresql", user, password, host, port, database)


def redis_url(*, password: str, host: str, port: int, db: int = 0, user: str = "") -> str:
    """A Redis URL; without `user`, the default user's (AUTH with the password alone)."""
    return _credentials_url("redis", user, password, host, port, str(db))


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
        port=embedded_port("COREBOARD_PG_PORT") if port is None else port,
        database=database,
    )


def embedded_redis_url(
    *, port: int | None = None, secret_name: str = REDIS_PASSWORD_SECRET, db: int = 0
) -> str:
    """The embedded Redis's URL on loopback (without credentials while it has none)."""
    password = read_secret(secret_name)
    port = embedded_port("COREBOARD_REDIS_PORT") if port is None else port
    if not password:
        return f"redis://127.0.0.1:{port}/{db}"
    return redis_url(password=password, host="127.0.0.1", port=port, db=db)
