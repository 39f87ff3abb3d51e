"""Trying a kind in this process: parameters checked by its form, every chunk run serially
and timed, every spec, partial and result checked to be JSON (jobs.kinds.jsoncheck), the
result as the job page shows it. No database, no worker: `manage.py try_kind` and the pytest
helper (jobs.kinds.testing) both use it.

Between the steps values take the trip the engine gives them (JSON through Celery and
PostgreSQL): `run` gets a spec and `combine` gets partials decoded from JSON, so a tuple
arrives as a list and an integer key as text, as they would in a worker.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.test.utils import override_settings

from jobs.kinds import registry
from jobs.kinds.base import (
    JobKind,
    Params,
    ResultDisplay,
    Spec,
    params_from_form_values,
)
from jobs.kinds.jsoncheck import json_problem
from jobs.kinds.loading import FOLDER_PACKAGE, folder_package_set
from jobs.kinds.result_fields import result_fields

# A parameter given as `name=@path` names a local file for an upload parameter.
UPLOAD_PREFIX = "@"


class TrialError(Exception):
    """A kind that cannot be tried as asked: not found, or a module that failed to import."""


class NotJSONValue(TypeError):
    """A spec, partial or result that is not JSON; the message names the key path."""


@dataclass
class ChunkRun:
    index: int
    spec: Spec
    partial: Any
    seconds: float
    progress_calls: int


@dataclass
class Trial:
    """What trying a kind gave: its specs, each chunk's run, the result and its display."""

    kind: JobKind
    params: Params
    specs: list[Spec]
    chunks: list[ChunkRun] = field(default_factory=list)
    result: Any = None
    display: ResultDisplay | None = None
    # A partial for which `finishes_job` was true ended the job after this chunk.
    finished_early_at: int | None = None

    @property
    def seconds(self) -> float:
        return sum(chunk.seconds for chunk in self.chunks)


def kind_resolve(name_or_module: str) -> JobKind:
    """A kind by its name, or the kind a module (dotted path or `.py` file) registers.

    Importing a module registers its kinds; when it registers several, the name
    `module:kind_name` picks one.
    """
    target, _, wanted = name_or_module.partition(":")
    path = Path(target)
    if not wanted and target.isidentifier():
        try:
            return registry.get(target)
        except registry.UnknownKind:
            pass
    before = {kind.name: kind for kind in registry.all_kinds()}
    if path.suffix == ".py" or path.is_dir():
        module_name = _import_file(path)
    else:
        module_name = target
        try:
            importlib.import_module(target)
        except ModuleNotFoundError as error:
            if error.name and target.startswith(error.name):
                raise TrialError(
                    f"No kind or module called {target!r}. Kinds: "
                    f"{', '.join(k.name for k in registry.all_kinds())}."
                ) from error
            raise
    if wanted:
        try:
            return registry.get(wanted)
        except registry.UnknownKind:
            raise TrialError(f"{target} registers no kind called {wanted!r}.") from None
    found = [
        kind
        for kind in registry.all_kinds()
        if kind.name not in before
        or type(kind).__module__ == module_name
        or type(kind).__module__.startswith(f"{module_name}.")
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TrialError(f"{target} registers no job kind (decorate one with @register).")
    names = ", ".join(kind.name for kind in found)
    raise TrialError(f"{target} registers several kinds ({names}): name one, {target}:NAME.")


def _import_file(path: Path) -> str:
    """Import a kind module from a file (or a package folder); its module name. A file of the
    kinds folder gets the name web and workers give it."""
    path = path.resolve()
    if path.is_dir():
        path = path / "__init__.py"
    if not path.is_file():
        raise TrialError(f"No such file: {path}")
    stem = path.parent.name if path.name == "__init__.py" else path.stem
    folder = Path(settings.COREBOARD_KINDS_DIR).resolve()
    owner = path.parent.parent if path.name == "__init__.py" else path.parent
    if owner == folder:
        folder_package_set(folder)
        name = f"{FOLDER_PACKAGE}.{stem}"
        importlib.import_module(name)
        return name
    loaded = sys.modules.get(stem)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return stem
    # A file named like a module already imported (json.py) must not replace it.
    name = stem if loaded is None else f"tried_{stem}"
    # As `python pricer.py` would: the file's folder is on the path, so it imports its
    # neighbours.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(
        name,
        path,
        submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None,
    )
    if spec is None or spec.loader is None:
        raise TrialError(f"{path} is not a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return name


def params_parse(kind: JobKind, pairs: Sequence[str]) -> tuple[Params, dict[str, Path]]:
    """`k=v` strings as the kind's parameters (typed as its form types them, like the
    browser form), and the local files given for upload parameters (`k=@path`)."""
    fields = kind.form_class.base_fields
    raw: dict[str, Any] = {}
    files: dict[str, Path] = {}
    errors: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            errors.setdefault("__all__", []).append(f"{pair!r}: give a parameter as name=value.")
            continue
        if name in kind.upload_fields():
            if not value.startswith(UPLOAD_PREFIX):
                errors[name] = [f"An upload: give a local file as {name}=@path/to/file."]
                continue
            files[name] = Path(value[len(UPLOAD_PREFIX) :]).expanduser()
            if not files[name].is_file():
                errors[name] = [f"No such file: {files[name]}"]
            continue
        raw[name] = value
    for name in sorted(set(raw) - set(fields)):
        errors[name] = [f"Unknown parameter; expected one of: {', '.join(fields)}."]
    try:
        typed = params_from_form_values(fields, raw)
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    return typed, files


def params_clean(kind: JobKind, params: Mapping[str, Any], files: Mapping[str, Path]) -> Params:
    """The kind's `clean_params` (ValidationError by field), with each upload parameter
    standing for its local file as the engine's upload dict (`{"id", "name", "size",
    "storage_name"}`, read with `default_storage` inside `uploads_from`)."""
    stand_in = {name: 1 for name in files}
    clean = kind.clean_params({**params, **stand_in})
    for name, path in files.items():
        clean[name] = {
            "id": 0,
            "name": path.name,
            "size": path.stat().st_size,
            "storage_name": str(path.resolve()),
        }
    return clean


@contextmanager
def uploads_from(files: Mapping[str, Path]) -> Iterator[None]:
    """`default_storage` reads local files by their absolute path for the block (what
    `params_clean` puts in `storage_name`), so a kind reads a local file as it reads an
    upload on a worker."""
    if not files:
        yield
        return
    storages = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": "/"},
        },
    }
    with override_settings(STORAGES=storages):
        yield


def _json_trip(value: Any, root: str) -> Any:
    """`value` as the engine passes it on (through JSON); NotJSONValue naming the key path
    when it is not JSON."""
    problem = json_problem(value, root)
    if problem is not None:
        raise NotJSONValue(str(problem))
    return json.loads(json.dumps(value))


def trial_specs(kind: JobKind, params: Params) -> list[Spec]:
    specs = list(kind.split(params))
    return [_json_trip(spec, f"spec[{i}]") for i, spec in enumerate(specs)]


def trial_run(
    kind: JobKind,
    params: Params,
    *,
    on_specs: Callable[[list[Spec]], None] | None = None,
    on_chunk: Callable[[ChunkRun, int], None] | None = None,
) -> Trial:
    """Split, run every chunk in order (timed), combine; JSON checked at every step.

    `on_specs(specs)` is called once split, `on_chunk(run, count)` after each chunk, so a
    caller can print as it goes. Raises NotJSONValue (naming the key path), or whatever
    the kind raises.
    """
    specs = trial_specs(kind, params)
    trial = Trial(kind=kind, params=params, specs=specs)
    if on_specs is not None:
        on_specs(specs)
    for index, spec in enumerate(specs):
        calls = [0]

        def progress(done: float, total: float, calls: list[int] = calls) -> None:
            calls[0] += 1

        started = time.perf_counter()
        partial = kind.run(spec, progress)
        seconds = time.perf_counter() - started
        run = ChunkRun(index, spec, _json_trip(partial, f"partial[{index}]"), seconds, calls[0])
        trial.chunks.append(run)
        if on_chunk is not None:
            on_chunk(run, len(specs))
        if kind.finishes_job(run.partial):
            trial.finished_early_at = index
            break
    result = kind.combine(params, [chunk.partial for chunk in trial.chunks])
    trial.result = _json_trip(result, "result")
    trial.display = kind.result_display(params, trial.result) or result_fields_display(trial.result)
    return trial


def result_fields_display(result: Any) -> ResultDisplay:
    """A result without a `result_display` as the job page shows it (its fields, see
    jobs.kinds.result_fields): its first table as the table, further ones named."""
    fields = result_fields(result)
    figures = list(fields.figures)
    if not fields.tables:
        return ResultDisplay(figures=figures)
    first, *more = fields.tables
    figures += [(table.caption, f"a table of {len(table.rows)} rows") for table in more]
    return ResultDisplay(
        figures=figures,
        table_caption=first.caption,
        table_columns=first.columns,
        table_rows=first.rows,
    )


def display_text(display: ResultDisplay) -> str:
    """A ResultDisplay as plain text: `label: value` lines, then an aligned table."""
    lines = [f"{label}: {text}" for label, text in display.figures]
    if display.table_columns or display.table_rows:
        if lines:
            lines.append("")
        if display.table_caption:
            lines.append(display.table_caption)
        table = [display.table_columns, *display.table_rows] if display.table_columns else []
        table = table or list(display.table_rows)
        widths = [
            max(len(str(row[i])) for row in table if i < len(row))
            for i in range(max(len(row) for row in table))
        ]
        for number, row in enumerate(table):
            lines.append(
                "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
            )
            if number == 0 and display.table_columns:
                lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
