"""The pages' copy of the websocket close codes (static/lib/live.mjs) against the server's
(jobs/protocol.py), both read from code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs import protocol

pytestmark = pytest.mark.consumers

ROOT = Path(__file__).resolve().parents[2]
READ_LIVE_MJS = (
    'import { CLOSE_CODES, STOP_CODES } from "./static/lib/live.mjs";'
    "console.log(JSON.stringify({ codes: CLOSE_CODES, stop: [...STOP_CODES] }));"
)


def _python_name(js_name: str) -> str:
    return "CLOSE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", js_name).upper()


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_pages_know_the_servers_close_codes() -> None:
    read = subprocess.run(
        ["node", "--input-type=module", "-e", READ_LIVE_MJS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    pages = json.loads(read.stdout)
    server = {
        name: value
        for name, value in vars(protocol).items()
        if name.startswith("CLOSE_") and isinstance(value, int)
    }
    assert {_python_name(name): code for name, code in pages["codes"].items()} == server
    assert set(pages["stop"]) == protocol.CLOSE_FINAL
