"""The URLs other machines reach the embedded PostgreSQL and Redis by.

A module of its own, below both users: the stack (launcher.stack) builds the worker's
URLs through an address, and the join command (launcher.join) carries them.
"""

from __future__ import annotations

import urllib.parse


def _credentials_url(scheme: str, user: str, password: str, host: str, port: int, path: str) -> str:
    # Passwords may hold any character: URL-encode them (the generated ones need not).
    credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return f"{scheme}://{credentials}@{host}:{port}/{path}"


def postgres_url(*, user: str, password: str, host: str, port: int, database: str) -> str:
    return _credentials_url("postgresql", user, password, host, port, database)


def redis_url(*, password: str, host: str, port: int, db: int = 0) -> str:
    return _credentials_url("redis", "", password, host, port, str(db))
