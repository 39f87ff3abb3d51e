"""The job-kind registry. Kinds register themselves with `@register` when imported."""

from __future__ import annotations

import importlib

from django.conf import settings

from jobs.kinds.base import JobKind, Params, Progress, Spec

__all__ = ["JobKind", "Params", "Progress", "Spec", "all_kinds", "get", "register"]

_registry: dict[str, JobKind] = {}


class UnknownKind(LookupError):
    pass


def register(cls: type[JobKind]) -> type[JobKind]:
    if not getattr(cls, "name", "").isidentifier():
        raise ValueError(f"job kind {cls!r} needs a `name` that is an identifier")
    if cls.name in _registry and type(_registry[cls.name]) is not cls:
        raise ValueError(f"job kind {cls.name!r} is registered twice")
    _registry[cls.name] = cls()
    return cls


def get(name: str) -> JobKind:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownKind(name) from None


def all_kinds() -> list[JobKind]:
    return sorted(_registry.values(), key=lambda kind: kind.name)


def load_configured() -> None:
    for module in settings.COREBOARD_JOB_KINDS:
        importlib.import_module(module)
