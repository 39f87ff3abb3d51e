"""The settings table (coreconf/config.py): one declaration per environment variable, from
which settings, the join command and docs/configuration.md are all derived."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

import project.settings as settings_module
from coreconf import config, paths
from jobs.management.commands.reference import stale_references
from launcher import join

pytestmark = pytest.mark.services

# Settings a worker reads that belong to its machine, not to the cluster: its identity.
# Each machine's own: what it runs, its tags, and the commit its launcher recorded.
MACHINE_OWN = {"COREBOARD_WORKER_KINDS", "COREBOARD_WORKER_LABELS", "COREBOARD_CODE_VERSION"}
# Django settings named COREBOARD_* that are not environment variables themselves.
DERIVED = {"BUILTIN_JOB_KINDS"}
UNIT_SUFFIXES = {
    "ms": "_MS",
    "s": "_S",
    "bytes": "_BYTES",
    "bytes/s": "_BYTES_PER_S",
    "days": "_DAYS",
}


def test_committed_reference_is_what_the_table_generates() -> None:
    committed = (paths.BASE_DIR / config.REFERENCE_PATH).read_text()
    assert committed == config.reference_markdown(), (
        "docs/configuration.md is out of date: run `python manage.py reference`"
    )
    assert stale_references() == []


def test_reference_lists_every_setting_and_each_old_name_as_deprecated() -> None:
    reference = config.reference_markdown()
    for entry in config.SETTINGS.values():
        assert f"| `{entry.name}` |" in reference
        for alias in entry.aliases:
            assert f"Formerly `{alias}`, still read (deprecated)." in reference
            assert f"| `{alias}` | `{entry.name}` |" in reference


def test_join_command_carries_exactly_the_shared_settings(tmp_path: Path) -> None:
    environ = {name: "7" for name in config.SETTINGS} | {"HOME": "/x"}
    command = join.join_command(
        database_url="postgresql://w:p@10.0.0.5:54329/cb",
        redis_url="redis://:p@10.0.0.5:56379/0",
        media_root=tmp_path,
        environ=environ,
    )
    assigned = dict(word.split("=", 1) for word in shlex.split(command)[:-2])
    shared = {entry.name for entry in config.shared_settings()}
    assert set(assigned) == shared
    assert {"DATABASE_URL", "REDIS_URL", "MEDIA_ROOT"} <= shared
    assert assigned["MEDIA_ROOT"] == str(tmp_path.resolve())
    assert "COREBOARD_KIND_QUEUES" in shared


def test_join_command_carries_a_setting_given_under_its_old_name_under_its_new_one(
    tmp_path: Path,
) -> None:
    command = join.join_command(
        database_url="postgresql://w:p@h:1/cb",
        redis_url="redis://:p@h:2/0",
        media_root=tmp_path,
        environ={"COREBOARD_CHUNK_TIME_LIMIT": "900"},
    )
    assert "COREBOARD_CHUNK_TIME_LIMIT_S=900 " in command
    assert "COREBOARD_CHUNK_TIME_LIMIT=" not in command


def test_every_setting_a_worker_reads_is_shared() -> None:
    """What the engine and the kinds read (`settings.X`) must match on every machine."""
    worker_code = [*Path(paths.BASE_DIR, "jobs", "engine").rglob("*.py")]
    worker_code += [*Path(paths.BASE_DIR, "jobs", "kinds").rglob("*.py")]
    read = {
        name
        for path in worker_code
        for name in re.findall(r"\bsettings\.([A-Z][A-Z0-9_]+)", path.read_text())
    }
    declared = read & set(config.SETTINGS)
    assert "COREBOARD_LEASE_MS" in declared
    not_shared = {name for name in declared if not config.SETTINGS[name].shared}
    assert not_shared <= MACHINE_OWN, f"read by workers but not shared: {not_shared}"


def test_every_coreboard_knob_in_settings_comes_from_the_table() -> None:
    knobs = {name for name in vars(settings_module) if name.startswith("COREBOARD_")}
    assert knobs - DERIVED <= set(config.SETTINGS)
    for name in knobs - DERIVED - {"COREBOARD_JOB_KINDS", "COREBOARD_KINDS_DIR"}:
        assert getattr(settings_module, name) == config.SETTINGS[name].read(os.environ), name
    folder = config.string("COREBOARD_KINDS_DIR")
    assert Path(folder or paths.BASE_DIR / "kinds") == settings_module.COREBOARD_KINDS_DIR
    kinds = settings_module.COREBOARD_JOB_KINDS
    assert kinds == [*settings_module.BUILTIN_JOB_KINDS, *config.strings("COREBOARD_JOB_KINDS")]


def test_names_carry_their_unit_and_never_seconds() -> None:
    for entry in config.SETTINGS.values():
        if entry.name.startswith("COREBOARD_"):
            assert not entry.name.endswith("_SECONDS"), entry.name
            if entry.unit:
                assert entry.name.endswith(UNIT_SUFFIXES[entry.unit]), entry.name


def test_an_old_name_still_works_and_the_new_one_wins() -> None:
    limit = config.setting("COREBOARD_CHUNK_TIME_LIMIT_S")
    assert limit.read({}) == 600
    assert limit.read({"COREBOARD_CHUNK_TIME_LIMIT": "30"}) == 30
    assert (
        limit.read({"COREBOARD_CHUNK_TIME_LIMIT": "30", "COREBOARD_CHUNK_TIME_LIMIT_S": "40"}) == 40
    )
    assert config.setting("COREBOARD_SLOT_MAX_SECONDS") is config.setting("COREBOARD_SLOT_MAX_S")


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("COREBOARD_LEASE_MS", "500", "COREBOARD_LEASE_MS must be >= 1000, got 500"),
        ("COREBOARD_LEASE_MS", "soon", "COREBOARD_LEASE_MS must be an integer, got 'soon'"),
        ("DEBUG", "maybe", "DEBUG must be a boolean, got 'maybe'"),
        ("COREBOARD_STOP_WAIT_S", "x", "COREBOARD_STOP_WAIT_S must be a number, got 'x'"),
        ("COREBOARD_KIND_QUEUES", "a=b,c", "COREBOARD_KIND_QUEUES: 'c' is not key=value"),
        ("COREBOARD_METRICS_ALLOWED_IPS", "10.0.0.0/8,nope", "'nope' is not an address"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "must be 'Header-Name,value'"),
        ("COREBOARD_LOGIN_LOCKOUT_SECONDS", "0", "COREBOARD_LOGIN_LOCKOUT_SECONDS must be >= 1"),
    ],
)
def test_a_value_that_cannot_be_used_stops_with_the_variable_and_the_rule(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(config.SettingError, match=re.escape(message)):
        config.setting(name).read({name: raw})


def test_an_empty_value_counts_as_unset() -> None:
    assert config.integer("COREBOARD_LEASE_MS", {"COREBOARD_LEASE_MS": ""}) == 10_000
    assert config.strings("ALLOWED_HOSTS", {"ALLOWED_HOSTS": " "}) == [
        "127.0.0.1",
        "localhost",
        "[::1]",
    ]


def test_a_setting_is_read_as_the_type_it_is_declared() -> None:
    with pytest.raises(TypeError, match="declared as int"):
        config.string("COREBOARD_LEASE_MS")
    with pytest.raises(KeyError, match="not declared"):
        config.integer("COREBOARD_NO_SUCH_SETTING")


def test_code_reads_the_environment_only_through_the_table() -> None:
    """A variable read behind the table's back would have no type, no doc and no alias."""
    reads = re.compile(
        r"(?:environ\.get\(|getenv\(|environ\[)\s*\"([A-Z][A-Z0-9_]*)\"(?!\]\s*=[^=])"
        r"|\"([A-Z][A-Z0-9_]*)\"\s+(?:not\s+)?in\s+(?:os\.)?environ"
    )
    # Process plumbing rather than settings.
    allowed = {"DJANGO_SETTINGS_MODULE"}
    found = {}
    for package in ("jobs", "launcher", "project", "tokens"):
        for path in Path(paths.BASE_DIR, package).rglob("*.py"):
            for match in reads.finditer(path.read_text()):
                name = match.group(1) or match.group(2)
                if name not in allowed:
                    found[name] = str(path.relative_to(paths.BASE_DIR))
    assert found == {}, f"read directly, not through coreconf/config.py: {found}"
