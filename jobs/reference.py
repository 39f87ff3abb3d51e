"""Reference pages generated from code: docs/api-reference.md from the OpenAPI schema that
drf-spectacular builds from the views, docs/protocol.md from the TypedDicts of
jobs/protocol.py.

`python manage.py reference` writes them (the command holds the list of pages), and the
tests compare the committed files with what these functions return, so a reference can
only say what the code does.
"""

from __future__ import annotations

import ast
import inspect
import types
from collections.abc import Iterable, Mapping
from typing import (
    Annotated,
    Any,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from django.db.models import Choices
from drf_spectacular.generators import SchemaGenerator

from jobs import protocol

REGENERATE = ".venv/bin/python manage.py reference"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def generated_notice(source: str) -> str:
    """The first line of every generated page: what made it and how to make it again."""
    return f"<!-- Generated from {source} by `{REGENERATE}`; do not edit by hand. -->"


def _cell(text: object) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    heads = list(header)
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


# --- the HTTP API ---------------------------------------------------------------------------------


def api_schema() -> dict[str, Any]:
    """The public OpenAPI schema, as /api/schema/ serves it."""
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return schema


def _schema_name(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return "`" + str(schema["$ref"]).rsplit("/", 1)[-1] + "`"
    if schema.get("type") == "array" and "items" in schema:
        return "list of " + _schema_name(schema["items"])
    if "oneOf" in schema:
        return " or ".join(_schema_name(option) for option in schema["oneOf"])
    return str(schema.get("type") or schema.get("format") or "any")


def _request_body(operation: Mapping[str, Any]) -> str:
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return ""
    media, body = next(iter(content.items()))
    return f"{_schema_name(body.get('schema', {}))} ({media})"


def _success(operation: Mapping[str, Any]) -> str:
    answers = []
    for status, response in operation.get("responses", {}).items():
        if not str(status).startswith("2"):
            continue
        content = response.get("content", {})
        if content:
            media, body = next(iter(content.items()))
            answers.append(f"{status}: {_schema_name(body.get('schema', {}))} ({media})")
        else:
            answers.append(f"{status}: no body")
    return "; ".join(answers)


def _errors(operation: Mapping[str, Any]) -> str:
    statuses = [str(s) for s in operation.get("responses", {}) if not str(s).startswith("2")]
    return ", ".join(sorted(statuses))


def _query(operation: Mapping[str, Any]) -> str:
    names = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"]
    return ", ".join(f"`{name}`" for name in names)


def api_reference() -> str:
    """docs/api-reference.md: every operation of the JSON API, from its OpenAPI schema."""
    schema = api_schema()
    rows = []
    for path, item in sorted(schema["paths"].items()):
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            rows.append(
                (
                    f"`{method.upper()} {path}`",
                    operation.get("summary", ""),
                    _query(operation),
                    _request_body(operation),
                    _success(operation),
                    _errors(operation),
                )
            )
    lines = [
        generated_notice("the OpenAPI schema (drf-spectacular, jobs/api/)"),
        "",
        "# API reference",
        "",
        "Every operation of the JSON API, as `/api/schema/` describes it (browse it at",
        "`/api/docs/`). Bodies and answers name the schema's components; the fields of",
        "`JobOut`, `ChunkOut` and `WaitingOut` are in [protocol.md](protocol.md). Every error",
        "answer is JSON; what the operations do is in [api.md](api.md).",
        "",
        *_table(("operation", "what", "query", "request body", "success", "other answers"), rows),
        "",
    ]
    return "\n".join(lines)


# --- the wire protocol ----------------------------------------------------------------------------


def _shapes() -> list[type]:
    """The TypedDicts jobs/protocol.py declares or imports, in that order."""
    return [
        value
        for value in vars(protocol).values()
        # A shape declared where it is made (jobs.kinds.loading.LoadFailure) and imported here.
        if is_typeddict(value) and value.__module__.startswith("jobs.")
    ]


def _declared_bases() -> dict[str, list[str]]:
    """Each protocol TypedDict's protocol TypedDict bases, read from the source: at run time
    (Python 3.11) a TypedDict subclass keeps no trace of the class it extends."""
    names = {shape.__name__ for shape in _shapes()}
    tree = ast.parse(inspect.getsource(protocol))
    return {
        node.name: [
            base.id for base in node.bases if isinstance(base, ast.Name) and base.id in names
        ]
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


def _type_text(hint: Any) -> str:
    """A field's type in words: `int`, `str or null`, `list of ChunkState`, a literal's values."""
    origin = get_origin(hint)
    if origin is Annotated:
        return _type_text(get_args(hint)[0])
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any JSON"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_text(arg) for arg in get_args(hint))
    if origin is Literal:
        return " or ".join(f'`"{value}"`' for value in get_args(hint))
    if origin is list:
        (item,) = get_args(hint)
        return f"list of {_type_text(item)}"
    if hint is dict or origin is dict:
        return "object"
    if is_typeddict(hint):
        return f"[{hint.__name__}](#{hint.__name__.lower()})"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint)


def _field_note(hint: Any) -> str:
    """What a field's `Annotated` extras say: its description, its allowed values, its format."""
    if get_origin(hint) is not Annotated:
        return ""
    notes = []
    for extra in get_args(hint)[1:]:
        if isinstance(extra, str):
            notes.append(extra)
        elif isinstance(extra, type) and issubclass(extra, Choices):
            notes.append("One of " + ", ".join(f"`{value}`" for value in extra.values) + ".")
        elif extra is protocol.DateTime:
            notes.append("ISO 8601 date and time.")
    return " ".join(notes)


def _shape_section(shape: type) -> list[str]:
    hints = get_type_hints(shape, include_extras=True)
    optional = shape.__optional_keys__  # type: ignore[attr-defined]
    rows = [
        (
            f"`{name}`" + (" (may be absent)" if name in optional else ""),
            _type_text(hint),
            _field_note(hint),
        )
        for name, hint in hints.items()
    ]
    bases = _declared_bases().get(shape.__name__, [])
    lines = [f"## {shape.__name__}", ""]
    doc = inspect.cleandoc(shape.__doc__ or "")
    if doc and not doc.startswith(f"{shape.__name__}("):
        lines += [" ".join(doc.split()), ""]
    if bases:
        lines += [
            "Every field of " + ", ".join(f"[{b}](#{b.lower()})" for b in bases) + ", and:",
            "",
        ]
        inherited = set().union(*(protocol.field_names(getattr(protocol, b)) for b in bases))
        rows = [row for row, name in zip(rows, hints, strict=True) if name not in inherited]
    lines += [*_table(("field", "type", "meaning"), rows), ""]
    return lines


def protocol_reference() -> str:
    """docs/protocol.md: every message type and every field of every shape in jobs/protocol.py."""
    public = protocol.PUBLIC_MESSAGE_TYPES
    events = protocol.CHANNEL_LAYER_EVENTS
    lines = [
        generated_notice("jobs/protocol.py"),
        "",
        "# The wire protocol",
        "",
        "The one shape of every job and chunk state, every websocket message and the API's",
        "job and chunk, as `jobs/protocol.py` declares them (TypedDicts). The JSON API",
        "([api-reference.md](api-reference.md)), the sockets and the pages all read these.",
        "",
        "Public message types (the `type` of a websocket message): "
        + ", ".join(f"`{name}`" for name in public)
        + f" (`{protocol.RESYNC}` is the one a client sends).",
        "Channel-layer events between processes, never sent to a client: "
        + ", ".join(f"`{name}`" for name in events)
        + ".",
        "",
    ]
    for shape in _shapes():
        lines += _shape_section(shape)
    return "\n".join(lines).rstrip() + "\n"
