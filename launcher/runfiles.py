"""What `make run` runs now, recorded under var/run: one `make run` per checkout, and the
processes an earlier one left behind (killed by SIGKILL, or its machine's power cut).

- `make-run.lock`: held (flock) by the running supervisor for its whole life, and freed by
  the kernel however it ends, so a second `make run` of the same checkout is refused while
  the first runs, and a lock left by a dead one never blocks.
- `<name>.pid` for each child the supervisor starts itself (the Celery worker, daphne):
  its pid and start time (so a reused pid is not taken for it). Each was started in a
  session of its own, so its pid is also its process group: stopping the group stops a
  worker's pool children too, even after their main process died.

PostgreSQL and Redis need no file here: their own pid files (`var/pg/data/postmaster.pid`,
`var/redis/redis.pid`) name them, and they are adopted, not stopped (launcher.stack).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import IO

import psutil

from coreconf import paths

LOCK_NAME = "make-run.lock"


class AlreadyRunning(RuntimeError):
    """Another `make run` of this checkout runs."""


def _run_dir() -> Path:
    paths.RUN_DIR.mkdir(parents=True, exist_ok=True)
    paths.RUN_DIR.chmod(0o755)
    return paths.RUN_DIR


def claim() -> IO[str]:
    """Take this checkout's `make run` lock (kept while the returned file stays open), or
    AlreadyRunning naming the supervisor that holds it."""
    handle = (_run_dir() / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise AlreadyRunning(
            f"another 'make run' (pid {holder}) runs this checkout ({paths.VAR_DIR}); "
            "stop it first, or give this one its own COREBOARD_VAR_DIR"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _pid_file(name: str) -> Path:
    return paths.RUN_DIR / f"{name}.pid"


def _started(pid: int) -> float | None:
    """When the process `pid` started; None when none runs (a zombie has ended)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def record(name: str, pid: int) -> None:
    """Remember a child the supervisor started (`name`: a file name such as "worker")."""
    started = _started(pid)
    if started is not None:
        (_run_dir() / f"{name}.pid").write_text(f"{pid} {started!r}\n")


def forget(name: str) -> None:
    _pid_file(name).unlink(missing_ok=True)


def recorded(name: str) -> int | None:
    """The pid recorded under `name` while that very process (or its process group, after
    its leader died) still runs; None otherwise."""
    try:
        pid_text, started_text = _pid_file(name).read_text().split()
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return None
    now = _started(pid)
    if now == started:
        return pid
    # Its leader gone (not reused by another process), its group may live on: a worker's
    # pool children. A group keeps its leader's pid as long as it has members.
    if now is None and _group_members(pid):
        return pid
    return None


def _group_members(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if (
                process.pid != pgid
                and os.getpgid(process.pid) == pgid
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                members.append(process.pid)
    return members


def stop_leftover(name: str, *, sig: int, wait_s: float = 5.0) -> int | None:
    """Stop the process group an earlier `make run` recorded under `name` if it still
    runs (`sig`, then SIGKILL after `wait_s`); its pid, or None when nothing was left."""
    pid = recorded(name)
    forget(name)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and (_started(pid) is not None or _group_members(pid)):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return pid
