"""Errors that name the culprit: the kind's own frames of a traceback, the kind's function,
and the key path of a value that is not JSON.

A kind's exception is shown to the person who wrote the kind, so its traceback keeps the
frames that are theirs (the kind's module, the libraries it calls) and drops Coreboard's
engine frames (jobs/engine, Celery, billiard), which are the same for every chunk; a note
at the end says how many were hidden. The whole traceback goes to the worker's log (DEBUG,
logger `jobs.engine.culprits`) for whoever runs the machines.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Iterator
from functools import cache
from typing import Any

import billiard
import celery

from jobs.kinds import base
from jobs.kinds.base import JobKind
from jobs.kinds.jsoncheck import json_problem

logger = logging.getLogger(__name__)


# The kinds' shared plumbing (the base class, the short form's generated kind) is
# Coreboard's too; the kinds' own modules beside them are not.
_KIND_PLUMBING = (
    "base.py",
    os.path.join("function", ""),
    "registry.py",
    "loading.py",
    "trial.py",
    "testing.py",
)


@cache
def _coreboard_places() -> tuple[str, ...]:
    here = os.path.dirname(os.path.realpath(__file__))
    packages = (os.path.dirname(os.path.realpath(m.__file__ or "")) for m in (celery, billiard))
    kinds_dir = os.path.dirname(os.path.realpath(base.__file__))
    return (
        *(os.path.join(path, "") for path in (here, *packages)),
        *(os.path.join(kinds_dir, name) for name in _KIND_PLUMBING),
    )


@cache
def is_coreboard_frame(filename: str) -> bool:
    """A frame of Coreboard's engine (or of the Celery worker around it, or the kinds'
    shared plumbing), not the kind's."""
    return os.path.realpath(filename).startswith(_coreboard_places())


def kind_function_name(kind: JobKind) -> str:
    """`module.qualname` of the code a kind runs: its short-form function, else its `run`."""
    definition = getattr(type(kind), "definition", None)
    function = getattr(definition, "function", None) or type(kind).run
    module = getattr(function, "__module__", None) or type(kind).__module__
    name = getattr(function, "__qualname__", None) or repr(function)
    return f"{module}.{name}"


def _chain(error: traceback.TracebackException) -> Iterator[traceback.TracebackException]:
    seen: set[int] = set()
    todo = [error]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo.extend(e for e in (link.__cause__, link.__context__) if e is not None)
        todo.extend(link.exceptions or ())


def kind_traceback(kind: JobKind, error: BaseException) -> str:
    """`error`'s traceback as a kind's author reads it: the exception first, then the
    traceback without Coreboard's frames, and how many were hidden."""
    full = traceback.TracebackException.from_exception(error)
    logger.debug("kind %s raised:\n%s", kind.name, "".join(full.format()))
    hidden = 0
    for link in _chain(full):
        kept = [frame for frame in link.stack if not is_coreboard_frame(frame.filename)]
        hidden += len(link.stack) - len(kept)
        link.stack = traceback.StackSummary.from_list(kept)
    summary = "".join(full.format_exception_only()).strip()
    text = f"{summary}\n" + "".join(full.format())
    if hidden:
        text += f"… {hidden} Coreboard frame{'' if hidden == 1 else 's'} hidden\n"
    return text


def json_text(value: Any) -> str | None:
    """`value` as the JSON text PostgreSQL's jsonb takes, or None when it is not JSON."""
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    # jsonb refuses NUL in text; escaped, it can only appear as this (or as an escaped
    # backslash followed by "u0000", which the walk tells apart).
    if "\\u0000" in encoded and json_problem(value) is not None:
        return None
    return encoded


def not_json_message(kind: JobKind, value: Any, *, what: str, root: str) -> str:
    """Why a kind's `what` (e.g. "the partial result of chunk 3") is refused: the kind,
    its function and the key path (from `root`) that is not JSON."""
    problem = json_problem(value, root)
    where = str(problem) if problem else f"{root}: not JSON"
    return (
        f"{what[:1].upper()}{what[1:]} of kind '{kind.name}' ({kind_function_name(kind)}) "
        f"is not JSON: {where}. Specs, partials and results must be JSON (objects with "
        "text keys, lists, text, finite numbers, true/false, null); this is not retried, "
        "since it would fail the same way."
    )
