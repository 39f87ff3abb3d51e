"""`make run`: start the whole stack in the foreground and keep it alive (launcher.supervisor);
Ctrl-C stops what it started, waiting for running chunks first.

With DATABASE_URL / REDIS_URL unset, a private PostgreSQL and Redis under ./var are
started first (the embedded default); with them set, those servers are used as they are.

It records what it runs under var/run (launcher.runfiles): a second `make run` of the
same checkout is refused while this one runs, and the next one after a SIGKILL stops the
worker and daphne this one left (they also end with it: launcher.parent) and adopts its
PostgreSQL and Redis.

Started by root, this supervisor stays root (it starts PostgreSQL through `runuser` and
writes var/secrets), but PostgreSQL runs as `postgres` and Redis, daphne and Celery as
the service user (COREBOARD_OS_USER, default `coreboard`). Those get their secrets
(SECRET_KEY and the database and Redis URLs) in their environment, which only they and
root can read, so var/secrets stays 0700 root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coreconf import config, paths
from launcher import join, parent, reload, runfiles, stack, supervisor
from launcher.worker import beat_command, default_node_name, node_id_file, worker_command


def daphne_command(port: int, bind: str = "127.0.0.1") -> list[str]:
    """daphne with Coreboard's request-body seam (launcher.server)."""
    return [
        sys.executable,
        "-m",
        "launcher.server",
        "-b",
        bind,
        "-p",
        str(port),
        "project.asgi:application",
    ]


def _manage(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(paths.BASE_DIR / "manage.py"), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _spawn(
    args: list[str], env: dict[str, str] | None = None, user: Any = None
) -> subprocess.Popen[bytes]:
    # Own process group: Ctrl-C reaches only us, and we stop children in order. The child
    # ends with us (launcher.parent), however we end.
    env = dict(os.environ if env is None else env)
    env[parent.SUPERVISOR_PID_ENV] = str(os.getpid())
    return subprocess.Popen(
        args, cwd=paths.BASE_DIR, start_new_session=True, env=env, **stack.as_service_user(user)
    )


def service_env(*, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of daphne and Celery: ours plus the secrets they must not read from
    var/secrets (root's) themselves."""
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", paths.django_secret_key())
    env["DATABASE_URL"] = database_url
    env["REDIS_URL"] = redis_url
    # Recorded here, as whoever runs `make`: git refuses the service user a checkout it
    # does not own, and the overview compares every machine's version with the web's.
    env.update(join.code_version_env(env))
    return env


# A reload stops a worker sooner than Ctrl-C does (a cold shutdown, then SIGKILL): a
# running chunk of the old code is not worth waiting for (its lease expires and it runs
# again, with the new code).
RELOAD_STOP_S = 1.0
WORKER = "celery worker"
DAPHNE = "daphne"
BEAT = "celery beat"
# Their files under var/run (launcher.runfiles), and how a leftover of each is stopped:
# the worker cold (SIGQUIT: its running chunks run again elsewhere, as after a reload).
RUN_FILES = {
    WORKER: ("worker", signal.SIGQUIT),
    DAPHNE: ("daphne", signal.SIGTERM),
    BEAT: ("beat", signal.SIGTERM),
}


class _Child:
    """A supervised child process: started, recorded, watched, stopped gently."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        user: Any,
        stop_wait_s: float,
        reload_signal: int = signal.SIGTERM,
        port: tuple[str, int] | None = None,
    ) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.run_file = RUN_FILES[name][0]
        self.port = port

        def start() -> None:
            self.process = _spawn(args, env, user)
            runfiles.record(self.run_file, self.process.pid)

        def stop(how: Callable[[], None]) -> None:
            how()
            runfiles.forget(self.run_file)

        self.component = supervisor.Component(
            name=name,
            start=start,
            health=self.health,
            stop=lambda: stop(lambda: supervisor.stop_gently(self.process, warm_s=stop_wait_s)),
            reload_stop=lambda: stop(
                lambda: supervisor.stop_quickly(
                    self.process, sig=reload_signal, wait_s=RELOAD_STOP_S
                )
            ),
        )

    def health(self) -> supervisor.Health:
        """Down when its process ended; daphne answers once its port accepts."""
        if not supervisor.process_alive(self.process):
            return supervisor.Health.DOWN
        if self.port is not None and not stack.port_is_open(self.port[1], self.port[0]):
            return supervisor.Health.SILENT
        return supervisor.Health.UP


def stop_leftovers() -> None:
    """Stop the worker, daphne and beat an earlier `make run` of this checkout left running
    (it was killed before it could), saying so."""
    for name, (run_file, sig) in RUN_FILES.items():
        pid = runfiles.stop_leftover(run_file, sig=sig)
        if pid is not None:
            print(f"make run: stopped the {name} (pid {pid}) left running by an earlier make run")


def kinds_report(env: dict[str, str] | None = None) -> dict[str, Any]:
    """`manage.py kinds --json`: the kinds Django finds with this environment, the kind
    modules that failed to load, and the sources to watch."""
    output = subprocess.run(
        [sys.executable, str(paths.BASE_DIR / "manage.py"), "kinds", "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return report


def failures_text(report: dict[str, Any]) -> str:
    """The kind modules that failed to load, a line each; "" when none did."""
    failures = report.get("failures") or []
    if not failures:
        return ""
    lines = ["Job kinds that failed to load (the other kinds run; staff see why on the overview):"]
    for failure in failures:
        where = failure["file"] or "module not found"
        if failure["file"] and failure["line"] is not None:
            where = f"{where}:{failure['line']}"
        lines.append(
            f"  {failure['module']} ({failure['source']}): {where}: "
            f"{failure['error']}: {failure['message']}"
        )
    return "\n".join(lines) + "\n"


def _join_hint(
    *,
    listen: join.Listen | None,
    postgres: stack.EmbeddedPostgres | None,
    redis: stack.EmbeddedRedis | None,
    database_url: str,
    redis_url: str,
) -> str:
    """What `make run` says about adding machines: the join command (written to
    var/join-command; printed in full only to a terminal, since it holds passwords), or
    how to get one."""
    if listen is None and (postgres is not None or redis is not None):
        join.join_command_forget()
        return (
            "To add worker machines: COREBOARD_LISTEN=<this machine's address> make run "
            "(docs/operations.md: Scaling out)."
        )
    worker_database_url = (
        postgres.worker_url(listen.url_host) if postgres and listen else database_url
    )
    worker_redis_url = redis.worker_url(listen.url_host) if redis and listen else redis_url
    command = join.join_command(
        database_url=worker_database_url, redis_url=worker_redis_url, media_root=paths.media_root()
    )
    path = join.join_command_write(command)
    notes = [
        f"To add a worker machine, run this in a checkout of the same code"
        f"{' (commit ' + version + ')' if (version := join.code_version()) else ''} there, "
        f"with MEDIA_ROOT the same shared directory (e.g. NFS) mounted at that path; "
        f"add NODE=, QUEUES=, CONCURRENCY=, LABELS= as needed:",
    ]
    if sys.stdout.isatty():
        notes.append(f"  {command}")
    notes.append(f"(written to {path}, mode 0600: it holds passwords)")
    for url in (worker_database_url, worker_redis_url):
        if join.url_is_loopback(url):
            notes.append(
                f"warning: {url.split('@')[-1]} is a loopback address, "
                "which other machines cannot reach"
            )
    return "\n".join(notes)


def _bind_note(bind: str) -> str:
    if bind in ("127.0.0.1", "localhost", "::1"):
        return ""
    return (
        f"daphne listens on {bind} (COREBOARD_BIND): put the names people use in ALLOWED_HOSTS, "
        "and TLS in front (docs/security.md).\n"
    )


def _reload(
    watcher: supervisor.Supervisor, changed: list[str], *, env: dict[str, str], port: int, host: str
) -> None:
    """Restart the worker and daphne after a kind's source changed; say how long it took
    and which kinds fail to load now."""
    started = time.monotonic()
    print(
        f"reload: {reload.change_note(changed, paths.BASE_DIR)} changed; restarting "
        "the worker and daphne",
        flush=True,
    )
    watcher.restart({WORKER, DAPHNE})
    stopped = time.monotonic() - started
    stack.wait_for_port(port, what="daphne", host=host)
    up = time.monotonic() - started
    # After daphne is up, not beside it: on a small machine it would slow the restart.
    try:
        report = kinds_report(env)
    except subprocess.CalledProcessError as error:
        print(f"reload: the kinds could not be listed:\n{error.stderr}", flush=True)
        return
    print(
        f"{failures_text(report)}reload: {len(report['kinds'])} kinds; stopped in "
        f"{stopped:.1f} s, web up again {up:.1f} s after the change",
        flush=True,
    )


def main() -> int:
    try:
        port = config.integer("PORT")
        bind = config.string("COREBOARD_BIND")
        # 0: no local worker (a web-only main machine).
        concurrency = config.integer("COREBOARD_WORKER_CONCURRENCY")
        # How long Ctrl-C waits for running chunks (a warm shutdown) before a cold one.
        stop_wait = config.number("COREBOARD_STOP_WAIT_S")
        max_crashes = config.integer("COREBOARD_SUPERVISE_MAX_CRASHES")
        reloading = config.boolean("COREBOARD_RELOAD")
    except config.SettingError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    try:
        lock = runfiles.claim()
    except runfiles.AlreadyRunning as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    watcher = supervisor.Supervisor(max_crashes=max_crashes)
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        listen = join.listen_from_env()
        listen_address = str(listen.address) if listen else ""
        database_url = config.string("DATABASE_URL")
        redis_url = config.string("REDIS_URL")
        postgres: stack.EmbeddedPostgres | None = None
        redis: stack.EmbeddedRedis | None = None
        stop_leftovers()
        if not database_url:
            postgres = stack.EmbeddedPostgres.default(
                listen_address=listen_address,
                listen_network=str(listen.network) if listen else "",
            )
            watcher.add(
                supervisor.Component(
                    name="PostgreSQL",
                    start=postgres.start,
                    health=postgres.health,
                    adopt=postgres.adopt,
                    stop=postgres.stop,
                )
            )
            database_url = postgres.url()
            where = f"127.0.0.1 and {listen_address}" if listen else "127.0.0.1"
            print(f"PostgreSQL (embedded) on {where}:{postgres.port}, data in {postgres.root}")
            if listen:
                print(f"  logins from {listen.network}: role {postgres.worker_user}, password only")
        if not redis_url:
            redis = stack.EmbeddedRedis.default(listen_address=listen_address)
            watcher.add(
                supervisor.Component(
                    name="Redis",
                    start=redis.start,
                    health=redis.health,
                    adopt=redis.adopt,
                    stop=redis.stop,
                )
            )
            # Its workers' ACL user, also on a server adopted from an earlier run.
            redis.worker_user_ensure()
            redis_url = redis.url()
            where = f"127.0.0.1 and {listen_address}" if listen else "127.0.0.1"
            print(f"Redis (embedded) on {where}:{redis.port}, data in {redis.root}")
        if postgres is not None or redis is not None:
            # For the commands run later without the port variables (coreconf.paths).
            paths.stack_ports_write(
                {
                    **paths.stack_ports(),
                    **({"COREBOARD_PG_PORT": postgres.port} if postgres else {}),
                    **({"COREBOARD_REDIS_PORT": redis.port} if redis else {}),
                }
            )
        _manage("migrate", "--noinput", "-v", "0")
        if postgres is not None:
            postgres.worker_role_ensure()
        login = _manage("ensure_admin")
        # Workers refuse a MEDIA_ROOT without this database's marker (jobs.engine.preflight).
        _manage("media_mark")
        user = stack.service_user()
        if user is not None:
            stack.give_to(paths.media_root(), user)
            stack.grant_interpreter(user, node_id_file())
        env = service_env(database_url=database_url, redis_url=redis_url)
        # The local worker logs in as other machines' workers do, with only what workers
        # need (launcher.least_privilege); daphne keeps the owner's accounts.
        worker_env = service_env(
            database_url=postgres.worker_url("127.0.0.1") if postgres else database_url,
            redis_url=redis.worker_url() if redis else redis_url,
        )
        wildcard = bind in ("0.0.0.0", "::")  # noqa: S104 - what the operator asked for
        port_host = "127.0.0.1" if wildcard else bind
        if concurrency:
            node = ["-n", default_node_name()]
            worker = _Child(
                WORKER,
                worker_command(concurrency, *node),
                worker_env,
                user,
                stop_wait,
                signal.SIGQUIT,
            )
            watcher.add(worker.component)
            workers = f"{concurrency} worker processes"
        else:
            workers = "web only: no local worker, COREBOARD_WORKER_CONCURRENCY=0"
        daphne = _Child(DAPHNE, daphne_command(port, bind), env, user, 10.0, port=(port_host, port))
        watcher.add(daphne.component)
        # People's schedules. With the owner's accounts, like daphne: beat writes
        # django-celery-beat's tables (last run times), and the runs it fires are created
        # by the workers (jobs.tasks), with theirs. Only one beat in a cluster fires
        # (jobs.beat's PostgreSQL lock); another machine's `make run` waits to take over.
        beat = _Child(BEAT, beat_command(), env, user, 10.0)
        watcher.add(beat.component)
        # Asked while daphne and the worker start: it takes a Django start of its own.
        report = kinds_report(env)
        stack.wait_for_port(port, what="daphne", host=port_host)
        kind_watcher = None
        reload_note = ""
        if reloading:
            kind_watcher = reload.KindWatcher(Path(source) for source in report["sources"])
            kind_watcher.start()
            reload_note = (
                "Reloading the worker and daphne when a kind's source changes "
                "(COREBOARD_RELOAD=0 turns it off).\n"
            )
        hint = _join_hint(
            listen=listen,
            postgres=postgres,
            redis=redis,
            database_url=database_url,
            redis_url=redis_url,
        )
        print(
            f"\n{failures_text(report)}"
            f"Coreboard is running at http://{'127.0.0.1' if wildcard else bind}:{port}/ "
            f"({workers}).\n{login}\n{_bind_note(bind)}"
            f"{hint}\n{reload_note}Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            watcher.check()
            if kind_watcher is None:
                time.sleep(0.5)
            elif changed := kind_watcher.wait_changed(timeout=0.5):
                _reload(watcher, changed, env=env, port=port, host=port_host)
        if kind_watcher is not None:
            kind_watcher.stop()
        return 0
    except (stack.StackError, subprocess.CalledProcessError, supervisor.GaveUp) as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    finally:
        print("Stopping Coreboard (waiting for running chunks)...", flush=True)
        watcher.stop_all()
        lock.close()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
