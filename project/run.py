"""`make run`: start the whole stack in the foreground; Ctrl-C stops what it started.

With DATABASE_URL / REDIS_URL unset, a private PostgreSQL and Redis under ./var are
started first (the embedded default); with them set, those servers are used as they are.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from project import stack

VENV_BIN = Path(sys.executable).parent


def worker_command(concurrency: int, *extra: str) -> list[str]:
    """The Celery worker Coreboard runs: prefork, one process per core by default."""
    return [
        str(VENV_BIN / "celery"),
        "-A",
        "project",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        *extra,
    ]


def daphne_command(port: int) -> list[str]:
    """daphne with Coreboard's request-body seam (project.server)."""
    return [
        sys.executable,
        "-m",
        "project.server",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "project.asgi:application",
    ]


def _manage(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(stack.BASE_DIR / "manage.py"), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # Own process group: Ctrl-C reaches only us, and we stop children in order.
    return subprocess.Popen(args, cwd=stack.BASE_DIR, start_new_session=True)


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    concurrency = int(os.environ.get("COREBOARD_WORKER_CONCURRENCY", str(os.cpu_count() or 1)))
    cleanups: list[Callable[[], None]] = []
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if "DATABASE_URL" not in os.environ:
            postgres = stack.EmbeddedPostgres.default()
            postgres.start()
            cleanups.append(postgres.stop)
            print(f"PostgreSQL (embedded) on 127.0.0.1:{postgres.port}, data in {postgres.root}")
        if "REDIS_URL" not in os.environ:
            redis = stack.EmbeddedRedis.default()
            redis.start()
            cleanups.append(redis.stop)
            print(f"Redis (embedded) on 127.0.0.1:{redis.port}, data in {redis.root}")
        _manage("migrate", "--noinput", "-v", "0")
        login = _manage("ensure_admin")
        children["celery worker"] = _spawn(worker_command(concurrency))
        children["daphne"] = _spawn(daphne_command(port))
        stack.wait_for_port(port, what="daphne")
        print(
            f"\nCoreboard is running at http://127.0.0.1:{port}/ "
            f"({concurrency} worker processes).\n{login}\nPress Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping.", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    except (stack.StackError, subprocess.CalledProcessError) as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    finally:
        print("Stopping Coreboard...", flush=True)
        for child in reversed(children.values()):
            _stop(child)
        for cleanup in reversed(cleanups):
            cleanup()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
