"""The `coreboard` command line's parameters and configuration, without a server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from django.utils import timezone
from rest_framework.test import APIClient

from coreboard.cli import main, parse_param
from coreboard.client import Client, ConfigError, InsecureCredentialsWarning, read_token_file
from jobs import kinds, services
from jobs.engine import chunks
from jobs.engine.output import Captured, OutputBuffer
from jobs.models import Job
from tests.factories import claim_one, start


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
    config.chmod(0o600)
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


def _through(api: APIClient) -> Callable[..., httpx.Client]:
    """httpx clients that the command line makes, answered by Django's test client."""

    def handle(request: httpx.Request) -> httpx.Response:
        response = api.generic(request.method, str(request.url.raw_path.decode()))
        return httpx.Response(response.status_code, content=response.content)

    real = httpx.Client

    def make(**kwargs: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(handle), **kwargs)

    return make


def _printed(job: Job, index: int, text: str, limit: int = 1000) -> None:
    claimed = claim_one(job)
    assert claimed.index == index
    buffer = OutputBuffer(limit)
    buffer.write(text)
    now = timezone.now()
    outcome = chunks.Done(claimed.id, {"iterations": 1}, 0.1, now, now, output=Captured.of(buffer))
    chunks.chunks_record(job_id=job.pk, outcomes=[outcome])


@pytest.mark.api
@pytest.mark.django_db
def test_logs_prints_each_chunks_output_under_a_header(
    alice_api: APIClient, alice_job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpx, "Client", _through(alice_api))
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    start(alice_job)
    _printed(alice_job, 0, "zero\n")
    _printed(alice_job, 1, "y" * 30 + "one, no newline", limit=20)
    services.job_cancel(job=alice_job)
    args = ["--url", "http://testserver", "logs", str(alice_job.pk)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output == (
        "── chunk 0 (done) ──\n"
        "zero\n"
        "── chunk 1 (done) ──\n"
        "[… 25 earlier bytes cut …]\n"
        "yyyyyone, no newline\n"
    )
    # One chunk, from the follow loop (the job ended: it stops at once).
    only = CliRunner().invoke(main, [*args, "--chunk", "0", "--follow"])
    assert only.output == "── chunk 0 (done) ──\nzero\n"
    as_json = CliRunner().invoke(main, ["--json", *args])
    assert [json.loads(line)["index"] for line in as_json.output.splitlines()] == [0, 1]


@pytest.mark.api
@pytest.mark.django_db
def test_kinds_lists_every_kind_with_its_parameters(
    alice_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kinds whose parameters are all optional have no "required" list in their schema.
    monkeypatch.setattr(httpx, "Client", _through(alice_api))
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    args = ["--url", "http://testserver", "kinds"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for kind in kinds.all_kinds():
        assert f"{kind.name} - {kind.label}" in result.output
        for name in kind.form_class.base_fields:
            assert f"--param {name}=" in result.output


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No URL or token from this machine's environment or config; the config's path."""
    for name in ("COREBOARD_URL", "COREBOARD_TOKEN", "COREBOARD_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("COREBOARD_CONFIG", str(config))
    return config


@pytest.mark.api
@pytest.mark.django_db
def test_global_options_go_before_or_after_the_command(
    alice_api: APIClient, alice_job: Job, monkeypatch: pytest.MonkeyPatch, no_credentials: Path
) -> None:
    monkeypatch.setattr(httpx, "Client", _through(alice_api))
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    before = CliRunner().invoke(main, ["--json", "--url", "http://testserver", "list"])
    after = CliRunner().invoke(main, ["list", "--json", "--url", "http://testserver"])
    mixed = CliRunner().invoke(main, ["--url", "http://testserver", "list", "--json"])
    for result in (before, after, mixed):
        assert result.exit_code == 0, result.output
        assert [job["id"] for job in json.loads(result.stdout)] == [alice_job.pk]
    action = CliRunner().invoke(main, ["cancel", str(alice_job.pk), "--url", "http://testserver"])
    assert action.exit_code == 0, action.output
    assert "cancelled" in action.stdout


@pytest.mark.api
def test_token_on_the_command_line_is_refused_saying_why(no_credentials: Path) -> None:
    for args in (["--token", "cb_secret", "list"], ["list", "--token", "cb_secret"]):
        result = CliRunner().invoke(main, ["--url", "http://example.invalid:1", *args])
        assert result.exit_code == 2
        assert "--token is no longer accepted" in result.stderr
        assert "COREBOARD_TOKEN" in result.stderr
        assert "--token-file" in result.stderr


@pytest.mark.api
def test_the_token_comes_from_the_environment_a_file_or_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_credentials: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("cb_from_file\n")
    key_file.chmod(0o600)
    no_credentials.write_text(f'url = "http://example.invalid:1"\ntoken_file = "{key_file}"\n')
    no_credentials.chmod(0o600)
    assert Client().token == "cb_from_file"
    no_credentials.write_text('url = "http://example.invalid:1"\ntoken = "cb_from_config"\n')
    assert Client().token == "cb_from_config"
    monkeypatch.setenv("COREBOARD_TOKEN_FILE", str(key_file))
    assert Client().token == "cb_from_file"
    monkeypatch.setenv("COREBOARD_TOKEN", "cb_from_env")
    assert Client().token == "cb_from_env"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_token_file(empty)
    missing = CliRunner().invoke(main, ["list", "--token-file", str(tmp_path / "none")])
    assert missing.exit_code == 2
    assert "Cannot read the token file" in missing.stderr
    no_credentials.write_text('url = "http://example.invalid:1\n')
    broken = CliRunner().invoke(main, ["list"])
    assert broken.exit_code == 2
    assert f"{no_credentials} is not valid TOML" in broken.stderr


@pytest.mark.api
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_others_can_read_is_warned_about_with_the_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_credentials: Path, mode: int
) -> None:
    monkeypatch.setattr(Client, "jobs", lambda self, **_: [])
    no_credentials.write_text('url = "http://example.invalid:1"\ntoken = "cb_1"\n')
    no_credentials.chmod(mode)
    shared = CliRunner().invoke(main, ["list"])
    assert shared.exit_code == 0, shared.output
    assert "other users of this machine can read" in shared.stderr
    assert f"chmod 600 {no_credentials}" in shared.stderr
    key_file = tmp_path / "key"
    key_file.write_text("cb_2")
    key_file.chmod(mode)
    with pytest.warns(InsecureCredentialsWarning, match=f"chmod 600 {key_file}"):
        read_token_file(key_file)

    no_credentials.chmod(0o600)
    private = CliRunner().invoke(main, ["list"])
    assert private.exit_code == 0, private.output
    assert "warning" not in private.stderr
    # A config without a token is no secret.
    no_credentials.write_text('url = "http://example.invalid:1"\n')
    no_credentials.chmod(0o644)
    monkeypatch.setenv("COREBOARD_TOKEN", "cb_3")
    assert "warning" not in CliRunner().invoke(main, ["list"]).stderr


@pytest.mark.api
def test_messages_are_not_wrapped_at_the_terminals_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_credentials: Path
) -> None:
    monkeypatch.setenv("COREBOARD_URL", "http://example.invalid:1")
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    monkeypatch.setenv("COLUMNS", "40")
    long_path = tmp_path / ("a-folder-with-a-long-name-" * 4) / "result.json"
    long_path.parent.mkdir()
    job = {"status": "succeeded", "result": {"n": 1}, "result_file": None}
    monkeypatch.setattr(Client, "job", lambda self, job_id: job)
    wrote = CliRunner().invoke(main, ["result", "1", "--output", str(long_path)])
    assert wrote.exit_code == 0, wrote.output
    assert wrote.stdout == f"wrote {long_path.stat().st_size} bytes to {long_path}\n"


@pytest.mark.api
def test_kinds_shows_a_choices_values_and_needs_no_required_list(
    monkeypatch: pytest.MonkeyPatch, no_credentials: Path
) -> None:
    # JSON Schema leaves out `required` when it is empty, and a choice has no `type`.
    schema = {
        "type": "object",
        "properties": {
            "mode": {"enum": ["fast", "exact"], "default": "fast"},
            "n": {"type": "integer", "minimum": 1, "maximum": 9},
        },
    }
    found = [{"name": "k", "label": "K", "description": "d", "params_schema": schema}]
    monkeypatch.setenv("COREBOARD_URL", "http://example.invalid:1")
    monkeypatch.setenv("COREBOARD_TOKEN", "k")
    monkeypatch.setattr(Client, "kinds", lambda self: found)
    result = CliRunner().invoke(main, ["kinds"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "k - K: d\n"
        '  --param mode=…  "fast" | "exact" (optional) e.g. fast\n'
        "  --param n=…  integer (optional) [min 1, max 9]\n"
    )
