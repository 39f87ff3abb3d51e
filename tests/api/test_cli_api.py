"""The `coreboard` command line's parameters and configuration, without a server."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from coreboard.cli import main, parse_param
from coreboard.client import Client, ConfigError


@pytest.mark.api
def test_parse_param_reads_json_values_or_text() -> None:
    assert parse_param("stop=100") == ("stop", 100)
    assert parse_param("rate=0.5") == ("rate", 0.5)
    assert parse_param("prefix=abc") == ("prefix", "abc")
    assert parse_param("prefix=") == ("prefix", "")


@pytest.mark.api
def test_missing_url_or_token_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COREBOARD_URL", raising=False)
    monkeypatch.delenv("COREBOARD_TOKEN", raising=False)
    monkeypatch.setenv("COREBOARD_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 2
    assert "COREBOARD_URL" in result.output
    with pytest.raises(ConfigError):
        Client()
    config = tmp_path / "config.toml"
    config.write_text('url = "http://example.invalid:1"\ntoken = "k"\n')
    assert Client(config=config).url == "http://example.invalid:1"


@pytest.mark.api
def test_submit_sends_a_chunk_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    def request(self: Client, method: str, path: str, **kwargs: Any) -> Any:
        sent.append({"method": method, "path": path, **kwargs})
        return SimpleNamespace(json=lambda: {"id": 7, "total_chunks": 2})

    monkeypatch.setenv("COREBOARD_URL", "http://example.invalid:1")
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    monkeypatch.setattr(Client, "_request", request)
    monkeypatch.setattr("coreboard.cli.suggested_params", lambda client, kind, values: {})
    result = CliRunner().invoke(
        main, ["submit", "burn", "-p", "chunks=2", "--chunk-time-limit", "30"]
    )
    assert result.exit_code == 0, result.output
    assert sent[-1]["json"] == {"kind": "burn", "params": {"chunks": 2}, "chunk_time_limit_s": 30}
    refused = CliRunner().invoke(main, ["submit", "burn", "--chunk-time-limit", "0"])
    assert refused.exit_code == 2
