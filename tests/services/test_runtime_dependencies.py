"""`make run` installs the runtime dependencies only (`uv sync --no-dev`): every module the
server, the workers, the launcher and the command line import must come from those, never
from the development group (pytest, Playwright, mypy, Schemathesis, ...)."""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
# What `make run` and `make worker` run: everything but the tests.
PACKAGES = ("project", "jobs", "tokens", "launcher", "coreconf", "coreboard")


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _runtime_distributions() -> set[str]:
    """`coreboard`'s dependencies and theirs (the environment's markers applied): what
    `uv sync --no-dev` installs."""
    found: set[str] = set()
    todo = [Requirement(text) for text in metadata.requires("coreboard") or []]
    while todo:
        requirement = todo.pop()
        name = _canonical(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        extras = requirement.extras
        if name in found and not extras:
            continue
        found.add(name)
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            wanted = not child.marker or any(
                child.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            )
            if wanted and _canonical(child.name) not in found:
                todo.append(child)
    return found


def _imported_top_level_modules() -> dict[str, str]:
    """Each third-party top-level module imported anywhere in PACKAGES, and one file that
    imports it."""
    modules: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        modules.setdefault(top, str(path.relative_to(ROOT)))
    return modules


def test_the_server_imports_only_runtime_dependencies() -> None:
    runtime = _runtime_distributions()
    assert {"django", "celery", "daphne", "click"} <= runtime
    assert not {"pytest", "playwright", "mypy", "schemathesis", "ruff"} & runtime
    providers = metadata.packages_distributions()
    outside = {
        f"{module} (from {where})"
        for module, where in _imported_top_level_modules().items()
        if not {_canonical(d) for d in providers.get(module, [])} & runtime
    }
    assert not outside, f"imported but not a runtime dependency: {sorted(outside)}"
