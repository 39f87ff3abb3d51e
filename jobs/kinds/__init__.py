"""Job kinds: the contract (jobs.kinds.base), the registry (kinds register themselves with
`@register` when imported) and where they are found (jobs.kinds.loading)."""

from __future__ import annotations

from jobs.kinds.base import JobKind, Params, Progress, Spec
from jobs.kinds.loading import (
    LoadFailure,
    failure_line,
    kind_sources,
    load_configured,
    load_failures,
)
from jobs.kinds.registry import (
    UnknownKind,
    all_kinds,
    get,
    register,
    temporary,
    unregister,
    version,
)
from jobs.kinds.versions import KindVersion

__all__ = [
    "JobKind",
    "KindVersion",
    "LoadFailure",
    "Params",
    "Progress",
    "Spec",
    "UnknownKind",
    "all_kinds",
    "failure_line",
    "get",
    "kind_sources",
    "load_configured",
    "load_failures",
    "register",
    "temporary",
    "unregister",
    "version",
]
