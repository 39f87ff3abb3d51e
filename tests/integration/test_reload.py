"""`make run` with kinds of a team: the kinds folder loaded, a broken module and a typo in
COREBOARD_JOB_KINDS named at start while the rest runs, and in development a kind's file
edited under the running launcher served (web) and run (worker) in its new version within
seconds."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import User

from launcher import stack
from tests.processes import ServerProcess
from tests.services_plugin import TEST_VAR
from tests.waiting import poll_until
from tokens.authentication import KEYWORD
from tokens.services import token_create

pytestmark = pytest.mark.integration

RELOAD_VAR = TEST_VAR / "make-run-reload"
# The bar: edit → running again in at most this long.
RELOAD_MAX_S = 10.0

KIND = """
from django import forms

from jobs.kinds import JobKind, register


class VersionForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=4, initial=2)


@register
class Versioned(JobKind):
    name = "reload_probe"
    label = "Reload probe, version {version}"
    form_class = VersionForm

    def split(self, params):
        return [{{"i": i}} for i in range(params["chunks"])]

    def run(self, spec, progress):
        return {version}

    def combine(self, params, partials):
        return {{"version": partials[0]}}
"""


def _api(port: str, key: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"{KEYWORD} {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our http URL
        return json.loads(response.read())


def _label(port: str, key: str) -> str | None:
    try:
        listed = _api(port, key, "/api/kinds/")
    except OSError:
        return None  # daphne is restarting
    return next((k["label"] for k in listed if k["name"] == "reload_probe"), None)


def _job_result(port: str, key: str) -> Any:
    """A job of the probe kind, run to its end: its result (None while it runs)."""
    job = _api(port, key, "/api/jobs/", {"kind": "reload_probe", "params": {"chunks": 2}})

    def finished() -> Any:
        state = _api(port, key, f"/api/jobs/{job['id']}/")
        return state if state["status"] in {"succeeded", "failed", "cancelled"} else None

    state = poll_until(finished, timeout=60)
    assert state["status"] == "succeeded", state
    return state["result"]


@pytest.mark.django_db(transaction=True)
def test_make_run_names_broken_kinds_runs_the_rest_and_reloads_an_edit_within_seconds(
    child_env: dict[str, str], alice: User
) -> None:
    if os.geteuid() != 0:
        pytest.skip("make run as root, as the other make run tests")
    shutil.rmtree(RELOAD_VAR, ignore_errors=True)
    folder = RELOAD_VAR / "kinds"
    folder.mkdir(parents=True)
    module = folder / "probe.py"
    module.write_text(KIND.format(version=1))
    broken = folder / "broken.py"
    broken.write_text("import math\n\ndef area(:\n    pass\n")
    for path in (module, broken):
        path.chmod(0o644)
    folder.chmod(0o755)
    key = token_create(user=alice, name="reload test").key
    port = str(stack.free_port())
    env = {
        **child_env,
        "COREBOARD_VAR_DIR": str(RELOAD_VAR),
        "MEDIA_ROOT": str(RELOAD_VAR / "media"),
        "PORT": port,
        "COREBOARD_WORKER_CONCURRENCY": "1",
        "COREBOARD_KINDS_DIR": str(folder),
        "COREBOARD_RELOAD": "1",
        "COREBOARD_ADMIN_USER": "reload-admin",
        "COREBOARD_JOB_KINDS": f"{child_env['COREBOARD_JOB_KINDS']},myteam.kindz",
    }
    run = ServerProcess([sys.executable, "-m", "launcher.run"], env, "make run")
    try:
        run.wait_for_line("Coreboard is running", timeout=120)
        banner = run.output().split("Coreboard is running")[0]
        assert f"coreboard_kinds.broken (kinds folder): {broken}:3: SyntaxError" in banner
        assert "myteam.kindz (COREBOARD_JOB_KINDS): module not found: ModuleNotFoundError" in (
            banner
        )
        assert "Reloading the worker and daphne when a kind's source changes" in run.output()
        assert _label(port, key) == "Reload probe, version 1"
        assert _job_result(port, key) == {"version": 1}

        edited = time.monotonic()
        module.write_text(KIND.format(version=2))
        poll_until(lambda: _label(port, key) == "Reload probe, version 2" or None, timeout=60)
        served_s = time.monotonic() - edited
        result = _job_result(port, key)
        ran_s = time.monotonic() - edited
        print(f"\nreload: edit -> new label served {served_s:.1f} s, new job done {ran_s:.1f} s")
        print("\n".join(line for line in run.lines if line.startswith("reload:")))

        assert result == {"version": 2}
        assert served_s <= RELOAD_MAX_S
        assert ran_s <= RELOAD_MAX_S
        assert "make-run-reload/kinds/probe.py changed; restarting" in run.output()
    finally:
        run.stop()
