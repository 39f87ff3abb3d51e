"""What the Makefile's install steps would run (`make -n`, in a copy: nothing is installed):
`make run` the runtime dependencies only, `make test` the development group too, and
switching between them reinstalls nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


def _planned(folder: Path, target: str) -> str:
    """The commands `make TARGET` would run (printed, none run: `make -n`)."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    return done.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile and the files its stamps depend on, with an installed uv, older than the
    stamps the test makes."""
    for name in ("Makefile", "pyproject.toml", "uv.lock", "package.json", "package-lock.json"):
        shutil.copy(ROOT / name, tmp_path / name)
        os.utime(tmp_path / name, (1_000_000, 1_000_000))
    (tmp_path / "var/bootstrap/bin").mkdir(parents=True)
    (tmp_path / "var/bootstrap/bin/uv").touch()
    (tmp_path / ".venv").mkdir()
    (tmp_path / "node_modules").mkdir()
    return tmp_path


@pytest.mark.parametrize("target", ["run", "worker"])
def test_run_installs_the_runtime_dependencies_only(checkout: Path, target: str) -> None:
    planned = _planned(checkout, target)
    assert "uv sync --frozen --no-dev --inexact" in planned
    assert "--group dev" not in planned
    if target == "run":
        assert "npm ci --omit=dev" in planned


@pytest.mark.parametrize("target", ["test", "test-fast", "lint", "typecheck", "screenshots"])
def test_the_test_targets_add_the_development_group(checkout: Path, target: str) -> None:
    planned = _planned(checkout, target)
    assert "uv sync --frozen --group dev" in planned
    assert "--no-dev" not in planned
    if target != "typecheck" and target != "test-fast":
        assert "npm ci --no-audit" in planned


def test_run_after_test_installs_nothing(checkout: Path) -> None:
    # What the test targets' installs leave: both stamps (the full sync stamps the runtime one).
    # Stamped at a set time after the inputs (1,000,000): a file's time is only as fine as
    # the kernel's clock tick, so "touched just before" could read as the same time.
    for stamp in (
        ".venv/.synced-dev",
        ".venv/.synced",
        "node_modules/.installed-dev",
        "node_modules/.installed",
    ):
        (checkout / stamp).touch()
        os.utime(checkout / stamp, (2_000_000, 2_000_000))
    planned = _planned(checkout, "run")
    assert "uv sync" not in planned
    assert "npm ci" not in planned
    # A changed lockfile installs again.
    (checkout / "uv.lock").touch()
    assert "uv sync --frozen --no-dev --inexact" in _planned(checkout, "run")
