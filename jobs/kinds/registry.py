"""The job-kind registry: kinds register themselves with `@register` when imported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from jobs.kinds.base import JobKind
from jobs.kinds.versions import KindVersion, kind_version_of

_registry: dict[str, JobKind] = {}
# Each registered kind's version, taken when it was registered (jobs.kinds.versions).
_versions: dict[str, KindVersion] = {}


class UnknownKind(LookupError):
    pass


def register(cls: type[JobKind]) -> type[JobKind]:
    if not getattr(cls, "name", "").isidentifier():
        raise ValueError(f"job kind {cls!r} needs a `name` that is an identifier")
    if cls.name in _registry and type(_registry[cls.name]) is not cls:
        raise ValueError(f"job kind {cls.name!r} is registered twice")
    if cls.name not in _registry or type(_registry[cls.name]) is not cls:
        _versions[cls.name] = kind_version_of(cls)
    _registry[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Forget the kind called `name` (nothing happens when there is none)."""
    _registry.pop(name, None)


@contextmanager
def temporary(*classes: type[JobKind]) -> Iterator[None]:
    """Register `classes` for the block; at its end the registry is again what it was, so
    any kind registered inside (by these or by code run there) is forgotten and any kind
    unregistered there is back. For tests and trials."""
    saved, saved_versions = dict(_registry), dict(_versions)
    try:
        for cls in classes:
            register(cls)
        yield
    finally:
        _registry.clear()
        _registry.update(saved)
        _versions.clear()
        _versions.update(saved_versions)


def get(name: str) -> JobKind:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownKind(name) from None


def all_kinds() -> list[JobKind]:
    return sorted(_registry.values(), key=lambda kind: kind.name)


def version(name: str) -> KindVersion:
    """The code version of the kind called `name` as this process loaded it."""
    get(name)
    return _versions[name]
