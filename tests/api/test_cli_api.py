"""The `coreboard` command line's parameters and configuration, without a server."""

from __future__ import annotations

from pathlib import Path

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
