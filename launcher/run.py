"""`make run`: start the whole stack in the foreground and keep it alive (launcher.supervisor);
Ctrl-C stops what it started, waiting for running chunks first.

With DATABASE_URL / REDIS_URL unset, a private PostgreSQL and Redis under ./var are
started first (the embedded default); with them set, those servers are used as they are.

Started by root, this supervisor stays root (it starts PostgreSQL through `runuser` and
writes var/secrets), but PostgreSQL runs as `postgres` and Redis, daphne and Celery as
the service user (COREBOARD_OS_USER, default `coreboard`). Those get their secrets
(SECRET_KEY and the database and Redis URLs) in their environment, which only they and
root can read, so var/secrets stays 0700 root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from coreconf import config, paths
from launcher import join, stack, supervisor
from launcher.worker import default_node_name, worker_command


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
    # Own process group: Ctrl-C reaches only us, and we stop children in order.
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
    return env


class _Child:
    """A supervised child process: started, watched, stopped gently."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], user: Any, stop_wait_s: float
    ) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.component = supervisor.Component(
            name=name,
            start=lambda: setattr(self, "process", _spawn(args, env, user)),
            alive=lambda: supervisor.process_alive(self.process),
            stop=lambda: supervisor.stop_gently(self.process, warm_s=stop_wait_s),
        )


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
    worker_redis_url = redis.url_through(listen.url_host) if redis and listen else redis_url
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


def main() -> int:
    try:
        port = config.integer("PORT")
        bind = config.string("COREBOARD_BIND")
        # 0: no local worker (a web-only main machine).
        concurrency = config.integer("COREBOARD_WORKER_CONCURRENCY")
        # How long Ctrl-C waits for running chunks (a warm shutdown) before a cold one.
        stop_wait = config.number("COREBOARD_STOP_WAIT_S")
        max_crashes = config.integer("COREBOARD_SUPERVISE_MAX_CRASHES")
    except config.SettingError as error:
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
        if not database_url:
            postgres = stack.EmbeddedPostgres.default(
                listen_address=listen_address,
                listen_network=str(listen.network) if listen else "",
            )
            watcher.add(
                supervisor.Component(
                    name="PostgreSQL",
                    start=postgres.start,
                    alive=lambda: supervisor.pid_file_alive(postgres.data_dir / "postmaster.pid"),
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
                    alive=lambda: supervisor.process_alive(redis.process),
                    stop=redis.stop,
                )
            )
            redis_url = redis.url()
            where = f"127.0.0.1 and {listen_address}" if listen else "127.0.0.1"
            print(f"Redis (embedded) on {where}:{redis.port}, data in {redis.root}")
        _manage("migrate", "--noinput", "-v", "0")
        if postgres is not None:
            postgres.worker_role_ensure()
        login = _manage("ensure_admin")
        # Workers refuse a MEDIA_ROOT without this database's marker (jobs.engine.preflight).
        _manage("media_mark")
        user = stack.service_user()
        if user is not None:
            stack.give_to(paths.media_root(), user)
            stack.grant_interpreter(user)
        env = service_env(database_url=database_url, redis_url=redis_url)
        if concurrency:
            node = ["-n", default_node_name()]
            worker = _Child(
                "celery worker", worker_command(concurrency, *node), env, user, stop_wait
            )
            watcher.add(worker.component)
            workers = f"{concurrency} worker processes"
        else:
            workers = "web only: no local worker, COREBOARD_WORKER_CONCURRENCY=0"
        watcher.add(_Child("daphne", daphne_command(port, bind), env, user, 10.0).component)
        wildcard = bind in ("0.0.0.0", "::")  # noqa: S104 - what the operator asked for
        stack.wait_for_port(port, what="daphne", host="127.0.0.1" if wildcard else bind)
        hint = _join_hint(
            listen=listen,
            postgres=postgres,
            redis=redis,
            database_url=database_url,
            redis_url=redis_url,
        )
        print(
            f"\nCoreboard is running at http://{'127.0.0.1' if wildcard else bind}:{port}/ "
            f"({workers}).\n{login}\n{_bind_note(bind)}"
            f"{hint}\nPress Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            watcher.check()
            time.sleep(0.5)
        return 0
    except (stack.StackError, subprocess.CalledProcessError, supervisor.GaveUp) as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    finally:
        print("Stopping Coreboard (waiting for running chunks)...", flush=True)
        watcher.stop_all()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
