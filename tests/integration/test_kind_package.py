"""Kinds a team deploys without touching settings, seen by real processes: a package
installed with a `coreboard.kinds` entry point, a file in the kinds folder, a broken module
named with its file:line while the rest loads, and the docs' testing snippet as a plain
script."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coreconf import paths

pytestmark = pytest.mark.integration

PACKAGE = "teamkinds_demo"
VERSION = "1.0"

KIND = '''"""A team's kind, shipped in a wheel."""

from django import forms

from jobs.kinds import JobKind


class HashForm(forms.Form):
    n = forms.IntegerField(min_value=1, max_value=10_000, initial=100)
    chunks = forms.IntegerField(min_value=1, max_value=10, initial=4)


class HashSum(JobKind):
    # Not decorated: the entry point `teamkinds_demo:HashSum` registers it.
    name = "team_hash_sum"
    label = "Team hash sum"
    form_class = HashForm

    def split(self, params):
        n, chunks = params["n"], params["chunks"]
        return [{"lo": n * i // chunks, "hi": n * (i + 1) // chunks} for i in range(chunks)]

    def run(self, spec, progress):
        return sum(i * 7 % 13 for i in range(spec["lo"], spec["hi"]))

    def combine(self, params, partials):
        return {"sum": sum(partials)}
'''


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path) -> Path:
    """A pure-Python wheel of PACKAGE declaring its kind in `[coreboard.kinds]`."""
    dist_info = f"{PACKAGE}-{VERSION}.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": KIND.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: coreboard-test\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": (
            f"[coreboard.kinds]\nteam_hash_sum = {PACKAGE}:HashSum\n"
        ).encode(),
    }
    record = [_record_line(name, data) for name, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def install(wheel: Path, target: Path) -> str:
    """Install the wheel into `target` with the project's uv when there is one (unpacked
    otherwise: a pure-Python wheel installs by unzipping); how it was installed."""
    candidates = [paths.BASE_DIR / "var" / "bootstrap" / "bin" / "uv", shutil.which("uv")]
    uv = next((str(c) for c in candidates if c and Path(c).is_file()), None)
    if uv is not None:
        subprocess.run(
            [uv, "pip", "install", "--offline", "--no-deps", "--target", str(target), str(wheel)],
            check=True,
            capture_output=True,
        )
        return "uv"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return "unzip"


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(paths.BASE_DIR / "manage.py"), *args],
        cwd=paths.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(extra)
    return env


def test_an_installed_kind_package_appears_and_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    how = install(build_wheel(tmp_path), site)
    env = _env(PYTHONPATH=str(site))

    listed = manage("kinds", "--json", env=env)
    tried = manage("try_kind", "team_hash_sum", "-p", "n=1000", "-p", "chunks=3", "--json", env=env)

    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout.splitlines()[-1])
    assert {"name": "team_hash_sum", "label": "Team hash sum", "module": PACKAGE} in report[
        "kinds"
    ], how
    assert report["failures"] == []
    assert tried.returncode == 0, tried.stderr
    result = json.loads(tried.stdout.splitlines()[-1])
    assert result["result"] == {"sum": sum(i * 7 % 13 for i in range(1000))}
    assert len(result["chunks"]) == 3
    # Without the package on the path the kind is not there, and nothing else breaks.
    without = manage("try_kind", "team_hash_sum", env=_env())
    assert without.returncode == 1
    assert "No kind or module called 'team_hash_sum'" in without.stderr


def test_a_kinds_folder_file_appears_and_a_broken_one_is_named_with_its_line(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "kinds"
    folder.mkdir()
    (folder / "team.py").write_text(
        KIND.replace("class HashSum(JobKind):", "@register\nclass HashSum(JobKind):").replace(
            "from jobs.kinds import JobKind", "from jobs.kinds import JobKind, register"
        )
    )
    (folder / "broken.py").write_text("import math\n\n\ndef area(r:\n    return math.pi\n")
    env = _env(COREBOARD_KINDS_DIR=str(folder))

    listed = manage("kinds", env=env)

    assert listed.returncode == 0, listed.stderr
    assert "team_hash_sum        Team hash sum  (coreboard_kinds.team)" in listed.stdout
    assert (
        f"job kind module 'coreboard_kinds.broken' (kinds folder) failed to load: "
        f"{folder}/broken.py:4: SyntaxError:" in listed.stdout
    )
    # The same line is logged once by the process that loaded the kinds (to stderr).
    assert listed.stderr.count("'coreboard_kinds.broken' (kinds folder) failed to load") == 1
    assert "primes" in listed.stdout


def _section_blocks(page: str, heading: str) -> list[str]:
    section = page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.M | re.S)


def test_the_docs_testing_examples_run_as_a_plain_python_script(tmp_path: Path) -> None:
    page = (paths.BASE_DIR / "docs" / "job-kinds.md").read_text()
    example = re.search(r"<!-- example-module: \w+ -->\s*```python\n(.*?)```", page, re.S)
    assert example is not None
    blocks = [example.group(1), *_section_blocks(page, "Trying and testing a kind")]
    script = tmp_path / "test_my_kind.py"
    script.write_text("\n\n".join(blocks) + "\nprint('docs examples ran')\n")
    env = _env(PYTHONPATH=str(paths.BASE_DIR))
    env.pop("DJANGO_SETTINGS_MODULE", None)

    ran = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert ran.returncode == 0, ran.stderr
    assert "docs examples ran" in ran.stdout
