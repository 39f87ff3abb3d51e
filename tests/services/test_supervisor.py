"""`make run`'s supervisor (launcher.supervisor): health, not exit codes; adoption; what
counts as an outage. Fake components with scripted health; the real ones are exercised by
tests/integration/test_supervise.py."""

from __future__ import annotations

import fcntl
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from coreconf import paths
from launcher import parent, runfiles, stack, supervisor
from launcher.supervisor import Health

pytestmark = pytest.mark.services


class Service:
    """A scripted service: its health is whatever the test sets; its starts and adoptions
    are counted."""

    def __init__(self, name: str = "PostgreSQL") -> None:
        self.state = Health.UP
        self.running_elsewhere: str | None = None
        self.start_error: Exception | None = None
        self.starts = 0
        self.adoptions = 0
        self.component = supervisor.Component(
            name=name,
            start=self.start,
            health=lambda: self.state,
            stop=lambda: None,
            adopt=self.adopt,
        )

    def start(self) -> None:
        self.starts += 1
        if self.start_error is not None:
            raise self.start_error
        self.state = Health.UP

    def adopt(self) -> str | None:
        if self.running_elsewhere is None:
            return None
        self.adoptions += 1
        self.state = Health.UP
        return self.running_elsewhere


def _watch(service: Service, max_crashes: int = 5) -> tuple[supervisor.Supervisor, list[str]]:
    lines: list[str] = []
    watcher = supervisor.Supervisor(max_crashes=max_crashes, log=lines.append)
    watcher.add(service.component)
    return watcher, lines


def test_a_restart_in_place_is_adopted_without_a_start_or_a_counted_outage() -> None:
    service = Service()
    watcher, lines = _watch(service)
    assert service.starts == 1
    # pg_ctl restart: it stops answering, its process goes, a new one comes up.
    service.state = Health.SILENT
    watcher.check(now=100.0)
    service.state = Health.DOWN
    watcher.check(now=100.4)
    service.state = Health.UP
    watcher.check(now=100.8)  # before the first attempt (1 s)
    assert service.starts == 1
    assert not service.component.starts
    assert lines[-1] == (
        "supervisor: PostgreSQL answers again 0.8 s after it stopped, back by itself "
        "(restarted in place, by someone else, or no longer busy): kept as it is, nothing counted"
    )


def test_an_attempt_that_finds_it_back_adopts_it_rather_than_starting_another() -> None:
    service = Service()
    watcher, lines = _watch(service)
    service.state = Health.DOWN
    watcher.check(now=100.0)
    # Someone started it on our data directory between two looks.
    service.running_elsewhere = "the PostgreSQL server already running on var/pg/data (pid 7)"
    service.state = Health.DOWN
    watcher.check(now=101.0)
    assert (service.starts, service.adoptions) == (1, 1)
    assert not service.component.starts
    assert "supervisor: PostgreSQL: adopted the PostgreSQL server already running" in lines[-1]


def test_a_start_refused_because_it_already_runs_adopts_it() -> None:
    service = Service()
    watcher, lines = _watch(service)
    service.state = Health.DOWN
    watcher.check(now=100.0)

    def refused() -> None:
        # Our start lost the race with another start: "a PostgreSQL server already runs".
        service.running_elsewhere = "pid 8"
        raise stack.StackError("a PostgreSQL server already runs")

    service.component.start = refused
    watcher.check(now=101.0)
    assert service.adoptions == 1
    assert not service.component.starts
    assert lines[-1] == "supervisor: PostgreSQL: adopted pid 8"
    watcher.check(now=101.5)
    assert service.component.down_since is None


def test_a_silent_process_is_waited_for_never_started_twice() -> None:
    service = Service()
    watcher, lines = _watch(service)
    service.state = Health.SILENT
    for tick in range(60):
        watcher.check(now=100.0 + tick * 0.5)
    assert service.starts == 1
    assert not service.component.starts
    assert lines == [
        "supervisor: PostgreSQL does not answer",
        "supervisor: PostgreSQL runs but has not answered for 10 s; waiting for it",
    ]


def test_a_service_that_keeps_dying_is_started_with_backoff_then_given_up() -> None:
    service = Service("Redis")
    watcher, lines = _watch(service)
    started_at: list[float] = []

    def dies_every_time() -> None:
        now = 100.0
        while now < 160:
            before = service.starts
            watcher.check(now=now)
            if service.starts > before:
                started_at.append(now)
            service.state = Health.DOWN  # it dies again at once
            now = round(now + 0.5, 1)

    with pytest.raises(supervisor.GaveUp, match="Redis went down 5 times within 60 s"):
        dies_every_time()
    # Seen down at 100.5, started 1 s later; then 2, 4, 8 s apart; the fifth gives up.
    assert started_at == [101.5, 103.5, 107.5, 115.5]
    assert lines.count("supervisor: starting Redis again") == 4


def test_restarts_in_place_never_add_up_to_giving_up() -> None:
    service = Service()
    watcher, _ = _watch(service, max_crashes=2)
    now = 100.0
    for _ in range(20):
        service.state = Health.SILENT
        watcher.check(now=now)
        service.state = Health.UP
        watcher.check(now=now + 0.5)
        now += 1.0
    assert service.starts == 1


def test_failed_starts_count_and_say_when_the_next_try_is() -> None:
    service = Service()
    watcher, lines = _watch(service)
    service.state = Health.DOWN
    service.start_error = stack.StackError("port 54329 is taken")
    watcher.check(now=100.0)
    watcher.check(now=101.0)
    assert lines[-2:] == [
        "supervisor: PostgreSQL did not start: port 54329 is taken",
        "supervisor: trying PostgreSQL again in 2 s",
    ]
    assert len(service.component.starts) == 1


def test_add_adopts_a_running_service_instead_of_starting_it() -> None:
    service = Service()
    service.running_elsewhere = "the Redis server already running on var/redis (pid 9)"
    _, lines = _watch(service)
    assert (service.starts, service.adoptions) == (0, 1)
    assert lines == [
        "supervisor: PostgreSQL: adopted the Redis server already running on var/redis (pid 9)"
    ]


# --- what `make run` records under var/run ---------------------------------------------


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "VAR_DIR", tmp_path)
    monkeypatch.setattr(paths, "RUN_DIR", tmp_path / "run")
    monkeypatch.setattr(paths, "STACK_PORTS_FILE", tmp_path / "run" / "ports.json")
    return tmp_path


def test_a_second_make_run_of_the_checkout_is_refused_while_the_first_holds_its_lock(
    var_dir: Path,
) -> None:
    first = runfiles.claim()
    try:
        with pytest.raises(runfiles.AlreadyRunning, match=r"another 'make run' \(pid \d+\)"):
            runfiles.claim()
    finally:
        first.close()
    # A lock whose holder is gone (closed here; the kernel does it for a killed one) is free.
    again = runfiles.claim()
    fcntl.flock(again, fcntl.LOCK_UN)
    again.close()


def test_a_recorded_pid_that_is_now_another_process_is_not_a_leftover(var_dir: Path) -> None:
    (var_dir / "run").mkdir()
    # pid 1 runs, but it is not the process recorded (another start time): a reused pid.
    (var_dir / "run" / "daphne.pid").write_text("1 12.5\n")
    assert runfiles.recorded("daphne") is None
    assert runfiles.stop_leftover("daphne", sig=15) is None
    assert not (var_dir / "run" / "daphne.pid").exists()


def test_commands_use_the_ports_make_run_recorded_unless_given(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COREBOARD_PG_PORT", raising=False)
    monkeypatch.delenv("COREBOARD_REDIS_PORT", raising=False)
    assert paths.embedded_port("COREBOARD_PG_PORT") == 54329
    paths.stack_ports_write({"COREBOARD_PG_PORT": 61001, "COREBOARD_REDIS_PORT": 61002})
    assert paths.embedded_postgres_url().endswith("@127.0.0.1:61001/coreboard")
    redis_url = urlsplit(paths.embedded_redis_url())
    assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "127.0.0.1", 61002)
    monkeypatch.setenv("COREBOARD_PG_PORT", "61003")
    assert paths.embedded_port("COREBOARD_PG_PORT") == 61003


def test_a_process_not_started_by_the_supervisor_sets_no_parent_death_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(parent.SUPERVISOR_PID_ENV, raising=False)
    assert parent.exit_with_parent(15) is False


def test_an_adopted_postgres_must_run_with_this_starts_options() -> None:
    postgres = stack.EmbeddedPostgres(root=Path("/srv/var/pg"), port=54329)
    running = ["-D", "/srv/var/pg/data", *shlex.split(postgres._options())]
    assert stack._without_data_dir(running) == shlex.split(postgres._options())
    other = stack.EmbeddedPostgres(root=Path("/srv/var/pg"), port=54330)
    assert stack._without_data_dir(running) != shlex.split(other._options())
