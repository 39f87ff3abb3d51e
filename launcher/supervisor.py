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
import time
from collections import deque
from collections.abc import Callable
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
