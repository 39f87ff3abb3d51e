"""Real server processes for tests and benchmarks: started, awaited by a log line, stopped."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Callable

import psutil
import psycopg
import redis

from coreconf import paths
from launcher import least_privilege, stack
from launcher.run import daphne_command
from launcher.worker import worker_command


class ServerProcess:
    """A child process whose output is collected, so callers can await a line from it."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        name: str,
        *,
        user: pwd.struct_passwd | None = None,
    ) -> None:
        """`user`: run as that account, as `make run` runs its services when root does."""
        self.name = name
        self.lines: deque[str] = deque(maxlen=2000)
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            args,
            cwd=paths.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            **(stack.as_service_user(user) if user is not None else {}),
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line.rstrip())
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, needle: str, timeout: float = 60) -> None:
        with self._seen:
            found = self._seen.wait_for(
                lambda: (
                    any(needle in line for line in self.lines) or self.process.poll() is not None
                ),
                timeout=timeout,
            )
        if not found or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.name} never printed {needle!r}:\n" + self.output())

    def children(self) -> list[psutil.Process]:
        children: list[psutil.Process] = psutil.Process(self.process.pid).children(recursive=True)
        return children

    def kill_all(self) -> None:
        """As if its machine died: the process and all its children at once (SIGKILL)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# The servers (URLs) on which worker_env has made the workers' accounts, and the URL it
# gives workers for each.
_WORKER_URLS: dict[str, str] = {}


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the workers' accounts in DATABASE_URL and REDIS_URL, as `make run` gives
    its worker (launcher.least_privilege): the worker role, made on the database that
    DATABASE_URL names, and the workers' Redis ACL user, both through the owner's URLs in
    `env`. A server that does not answer (a fault test's) or cannot make the account (a
    Redis without ACLs, a database role that may not create roles) keeps the URL given."""
    return {
        **env,
        "DATABASE_URL": _worker_url(env["DATABASE_URL"], _postgres_worker_url),
        "REDIS_URL": _worker_url(env["REDIS_URL"], _redis_worker_url),
    }


def _worker_url(url: str, make: Callable[[str], str]) -> str:
    if url not in _WORKER_URLS:
        try:
            _WORKER_URLS[url] = make(url)
        except (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege):
            return url
        except (redis.ConnectionError, redis.TimeoutError):
            return url
    return _WORKER_URLS[url]


def _postgres_worker_url(url: str) -> str:
    password = paths.read_or_create_secret(stack.PRIVATE_PG_WORKER_SECRET)
    least_privilege.postgres_worker_role_ensure(url, password=password)
    return least_privilege.with_credentials(
        url, user=least_privilege.WORKER_ROLE, password=password
    )


def _redis_worker_url(url: str) -> str:
    # The password the private services' Redis gives the user at its (re)start.
    password = paths.read_or_create_secret(stack.redis_worker_secret(stack.PRIVATE_REDIS_SECRET))
    if not least_privilege.redis_worker_user_ensure(url, password=password):
        return url
    return least_privilege.with_credentials(
        url, user=least_privilege.WORKER_REDIS_USER, password=password
    )


def _node_name(node: str) -> str:
    return node if "@" in node else f"{node}@%h"


def start_celery_worker(
    env: dict[str, str], concurrency: int, *, node: str | None = None
) -> ServerProcess:
    """A real `celery worker --pool=prefork`, returned once it says it is ready; its node
    name is `node` (`name@host`, or `name` to which `@<host>` is added) or a fresh one. It
    logs in with the workers' accounts (worker_env), as in production."""
    worker = ServerProcess(
        worker_command(
            concurrency,
            "--without-gossip",
            "--without-mingle",
            "-n",
            _node_name(node or f"test-{uuid.uuid4().hex[:8]}"),
        ),
        worker_env(env),
        "celery worker",
    )
    worker.wait_for_line("ready.")
    return worker


def start_daphne(
    env: dict[str, str], port: int | None = None, *, user: pwd.struct_passwd | None = None
) -> tuple[ServerProcess, str]:
    """A real daphne serving project.asgi on a loopback port (a free one by default), as
    `user` when given."""
    port = port or stack.free_port()
    server = ServerProcess(daphne_command(port), env, "daphne", user=user)
    server.wait_for_line("Listening on TCP address")
    return server, f"http://127.0.0.1:{port}"
