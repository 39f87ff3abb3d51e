"""Keeping `make run`'s components alive: restart what dies, with backoff; stop in order.

A component that exits is started again after a backoff (1 s, 2 s, 4 s … 30 s) with a log
line; one that dies COREBOARD_SUPERVISE_MAX_CRASHES times within a minute stops the stack,
since restarting it again would only hide the fault.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
CRASH_WINDOW_S = 60.0


class GaveUp(RuntimeError):
    """A component kept dying."""


@dataclass
class Component:
    name: str
    start: Callable[[], None]
    alive: Callable[[], bool]
    stop: Callable[[], None]
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    # How a reload stops it (quicker than `stop`); `stop` when None.
    reload_stop: Callable[[], None] | None = None


class Supervisor:
    def __init__(self, *, max_crashes: int = 5, log: Callable[[str], None] | None = None) -> None:
        self.max_crashes = max_crashes
        self.components: list[Component] = []
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def add(self, component: Component) -> None:
        """Start a component and watch it from now on."""
        component.start()
        self.components.append(component)

    def check(self) -> None:
        """Restart what died (when its backoff is over); GaveUp if one keeps dying."""
        now = time.monotonic()
        for component in self.components:
            if component.restart_at is not None:
                if now >= component.restart_at:
                    component.restart_at = None
                    self.log(f"supervisor: starting {component.name} again")
                    try:
                        component.start()
                    except Exception as error:
                        self.log(f"supervisor: {component.name} did not start: {error}")
                        self._crashed(component, now)
                continue
            if not component.alive():
                self._crashed(component, now)

    def _crashed(self, component: Component, now: float) -> None:
        component.crashes.append(now)
        while component.crashes and now - component.crashes[0] > CRASH_WINDOW_S:
            component.crashes.popleft()
        if len(component.crashes) >= self.max_crashes:
            raise GaveUp(
                f"{component.name} died {len(component.crashes)} times within "
                f"{CRASH_WINDOW_S:.0f} s; stopping"
            )
        delay = min(BACKOFF_FIRST_S * 2 ** (len(component.crashes) - 1), BACKOFF_MAX_S)
        self.log(f"supervisor: {component.name} exited; restarting in {delay:.0f} s")
        component.restart_at = now + delay

    def restart(self, names: Collection[str]) -> None:
        """Stop the named components (the last started first) and start them again now: a
        reload, not a crash, so no backoff and no crash counted."""
        chosen = [component for component in self.components if component.name in names]

        def stop(component: Component) -> None:
            try:
                (component.reload_stop or component.stop)()
            except Exception as error:
                self.log(f"supervisor: stopping {component.name} failed: {error}")

        # At once: each waits for its own process, and a reload is waited for by a person.
        stopping = [threading.Thread(target=stop, args=(c,)) for c in reversed(chosen)]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        for component in chosen:
            component.crashes.clear()
            component.restart_at = None
            try:
                component.start()
            except Exception as error:
                self.log(f"supervisor: {component.name} did not start: {error}")
                self._crashed(component, time.monotonic())

    def stop_all(self) -> None:
        """Stop every component, the last started first."""
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception as error:
                self.log(f"supervisor: stopping {component.name} failed: {error}")


def process_alive(process: subprocess.Popen[bytes] | None) -> bool:
    return process is not None and process.poll() is None


def pid_file_alive(path: Path) -> bool:
    """Whether the process named on the first line of a pid file (postmaster.pid) runs."""
    try:
        pid = int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_gently(
    process: subprocess.Popen[bytes] | None, *, warm_s: float, cold_s: float = 15.0
) -> None:
    """SIGTERM, then SIGQUIT, then SIGKILL, each after its wait.

    For a Celery worker SIGTERM is a warm shutdown (it finishes the running slots, which
    give their process back at their next chunk boundary) and SIGQUIT a cold one (running
    slots stop; their chunks' leases expire and the reconciler sends the slots again).
    """
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, warm_s), (signal.SIGQUIT, cold_s)):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def stop_quickly(process: subprocess.Popen[bytes] | None, *, sig: int, wait_s: float) -> None:
    """`sig`, then SIGKILL to its whole process group (a Celery pool's children too) after
    `wait_s`: for a reload in development, where a person waits and a chunk cut short runs
    again once its lease expires."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=wait_s)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Started in its own session (launcher.run._spawn): its group is its pid.
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
