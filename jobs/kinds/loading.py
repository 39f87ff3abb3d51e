"""Finding the job kinds: the modules in COREBOARD_JOB_KINDS, the `coreboard.kinds` entry
points of installed packages, and the files and packages in COREBOARD_KINDS_DIR.

Every process (web, each worker, a management command) loads them the same way when Django
starts (jobs.apps), so web and workers agree on the kinds and their module names. A module
that fails to import is recorded (`load_failures()`) and logged as one line; the other
kinds, and Coreboard, go on.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import traceback
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TypedDict

from django.conf import settings

from jobs.kinds.base import JobKind
from jobs.kinds.registry import all_kinds, register, unregister

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "coreboard.kinds"
# The modules of the kinds folder are imported as submodules of this package (whatever the
# folder's path), so a kind's module name is the same in every process.
FOLDER_PACKAGE = "coreboard_kinds"
# Enough of a traceback to read; a recursion error's would be megabytes.
TRACEBACK_MAX_CHARS = 8_000


class LoadFailure(TypedDict):
    """A kind module that failed to import: where it was named and why it failed."""

    module: str
    # COREBOARD_JOB_KINDS, "entry point NAME (DISTRIBUTION)" or "kinds folder".
    source: str
    # The file and line the error points at; "" and null when the module was not found.
    file: str
    line: int | None
    error: str
    message: str
    traceback: str


_failures: list[LoadFailure] = []


def load_failures() -> list[LoadFailure]:
    """The kind modules that failed to import when this process loaded its kinds."""
    return list(_failures)


def failure_line(failure: LoadFailure) -> str:
    """One failure as one log line: module, where it was named, file:line, the exception."""
    where = failure["file"] or "(no file)"
    if failure["line"] is not None:
        where = f"{where}:{failure['line']}"
    return (
        f"job kind module {failure['module']!r} ({failure['source']}) failed to load: "
        f"{where}: {failure['error']}: {failure['message']}"
    )


def load_configured() -> list[LoadFailure]:
    """Import every kind module this process is configured or installed with; the failures.

    Each failure is logged once, as one line, and kept for `load_failures()`.
    """
    _failures.clear()
    for module in settings.COREBOARD_JOB_KINDS:
        _load(module, source="COREBOARD_JOB_KINDS")
    for entry in _entry_points():
        distribution = entry.dist.name if entry.dist is not None else "?"
        _load(
            entry.module,
            attr=entry.attr,
            source=f"entry point {entry.name} ({distribution})",
        )
    for module, problem in folder_modules(settings.COREBOARD_KINDS_DIR):
        if problem:
            _failures.append(
                _failure(module, "kinds folder", "ImportError", problem, file="", line=None)
            )
        else:
            _load(module, source="kinds folder")
    for failure in _failures:
        logger.error(failure_line(failure))
    return load_failures()


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def folder_modules(folder: Path) -> list[tuple[str, str]]:
    """The modules of a kinds folder as `(module name, "")`, or `(name, why it cannot be
    imported)` for a file whose name is not a module name. Names starting with `_` or `.`
    are skipped (helpers, caches); so is everything else that is not `*.py` or a package."""
    if not folder.is_dir():
        return []
    folder_package_set(folder)
    found: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir():
            if not (path / "__init__.py").is_file():
                continue
            stem = path.name
        elif path.suffix == ".py":
            stem = path.stem
        else:
            continue
        module = f"{FOLDER_PACKAGE}.{stem}"
        if not stem.isidentifier():
            found.append(
                (module, f"{path}: {stem!r} is not a Python module name (letters, digits, _)")
            )
        else:
            found.append((module, ""))
    return found


def folder_package_set(folder: Path) -> None:
    """Make `coreboard_kinds` the package whose modules are the folder's (once per folder)."""
    existing = sys.modules.get(FOLDER_PACKAGE)
    if existing is not None and list(getattr(existing, "__path__", [])) == [str(folder)]:
        return
    # Another folder (a test's): its old modules are not this folder's.
    for name in [n for n in sys.modules if n.startswith(f"{FOLDER_PACKAGE}.")]:
        del sys.modules[name]
    spec = importlib.machinery.ModuleSpec(FOLDER_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    package = importlib.util.module_from_spec(spec)
    sys.modules[FOLDER_PACKAGE] = package


def _load(module: str, *, source: str, attr: str | None = None) -> None:
    before = {kind.name for kind in all_kinds()}
    try:
        loaded = importlib.import_module(module)
        if attr:
            target: object = loaded
            for part in attr.split("."):
                target = getattr(target, part)
            registered = {type(kind) for kind in all_kinds()}
            if isinstance(target, type) and issubclass(target, JobKind):
                _register_once(target, registered)
    except Exception as error:
        # A module that failed has no kinds: not the ones it registered before failing.
        for kind in all_kinds():
            if kind.name not in before:
                unregister(kind.name)
        _failures.append(_failure_from(module, source, error))


def _register_once(cls: type[JobKind], registered: set[type[JobKind]]) -> None:
    # An entry point may name a class its module registered already with @register.
    if cls not in registered:
        register(cls)


def _failure(
    module: str, source: str, error: str, message: str, *, file: str, line: int | None
) -> LoadFailure:
    return {
        "module": module,
        "source": source,
        "file": file,
        "line": line,
        "error": error,
        "message": message,
        "traceback": "",
    }


def _failure_from(module: str, source: str, error: Exception) -> LoadFailure:
    file, line = _where(module, error)
    text = "".join(traceback.format_exception(error))
    failure = _failure(module, source, type(error).__name__, _message(error), file=file, line=line)
    failure["traceback"] = text[-TRACEBACK_MAX_CHARS:]
    return failure


def _message(error: Exception) -> str:
    if isinstance(error, SyntaxError):
        return error.msg
    return str(error)


def _where(module: str, error: Exception) -> tuple[str, int | None]:
    """The file and line to show: a syntax error's own; else the deepest frame in the
    module's file, else the deepest frame at all (where a module it imports failed)."""
    if isinstance(error, SyntaxError):
        return error.filename or "", error.lineno
    if (
        isinstance(error, ModuleNotFoundError)
        and error.name
        and (module == error.name or module.startswith(f"{error.name}."))
    ):
        return "", None
    origin = module_file(module)
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<frozen")
    ]
    own = [frame for frame in frames if origin and frame.filename == origin]
    chosen = own[-1] if own else frames[-1] if frames else None
    if chosen is None:
        return origin, None
    return chosen.filename, chosen.lineno


def module_file(module: str) -> str:
    """The file a module is (or would be) loaded from, without running it; "" when unknown."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not spec.has_location:
        return ""
    return spec.origin


def kind_sources() -> list[Path]:
    """What `make run` watches to reload the kinds: the kinds folder, jobs/kinds, and the
    folders of the modules named in COREBOARD_JOB_KINDS and the entry points (a top-level
    single-file module: the file itself)."""
    sources = {Path(__file__).resolve().parent}
    folder = Path(settings.COREBOARD_KINDS_DIR)
    if folder.is_dir():
        sources.add(folder.resolve())
    modules = [*settings.COREBOARD_JOB_KINDS, *(entry.module for entry in _entry_points())]
    for module in modules:
        origin = module_file(module)
        if not origin:
            continue
        path = Path(origin).resolve()
        if path.name == "__init__.py" or "." in module:
            sources.add(path.parent)
        else:
            sources.add(path)
    # A folder inside another one watched is watched already.
    return sorted(
        source
        for source in sources
        if not any(other != source and other in source.parents for other in sources)
    )
