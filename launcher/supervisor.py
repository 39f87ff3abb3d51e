"""Keeping `make run`'s components alive: watch their health, adopt what came back by
itself, restart what is down, with backoff; stop in order.

A component's liveness is a health check (`Health`), not the exit code of our own start:
PostgreSQL is up when its postmaster runs and accepts connections, Redis when it answers
PING, daphne when its process runs and its port accepts, the worker when its process runs.

- A component whose process runs but does not answer (starting, restarting in place,
  shutting down, busy) is waited for, never started a second time.
- One that is down is started again after a backoff (1 s, 2 s, 4 s … 30 s); the attempt
  first adopts it if it is back meanwhile (`pg_ctl restart`, or someone started it on
  our data directory and port), and so does a start that fails because it runs.
- Only starts the supervisor had to make count as outages: one that needed
  COREBOARD_SUPERVISE_MAX_CRASHES starts within a minute stops the stack, since starting
  it again would only hide the fault. A restart the service survives counts nothing.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
CRASH_WINDOW_S = 60.0
# An adopted service must answer within this (a start of our own waits as long).
ADOPT_WAIT_S = 30.0
# A process that runs without answering this long is reported (once per outage).
SILENT_REPORT_S = 10.0


class GaveUp(RuntimeError):
    """A component kept dying."""


class Health(enum.Enum):
    UP = "up"  # it answers
    SILENT = "silent"  # its process runs but does not answer: starting, stopping, busy
    DOWN = "down"  # no process of it runs


@dataclass
class Component:
    name: str
    start: Callable[[], None]
    health: Callable[[], Health]
    stop: Callable[[], None]
    # Takes over an instance that runs already (ours, on our data directory and port) and
    # says which ("pid 123 on var/pg/data"); None when none runs. Children are never adopted.
    adopt: Callable[[], str | None] = lambda: None
    # How a reload stops it (quicker than `stop`); `stop` when None.
    reload_stop: Callable[[], None] | None = None
    # When the supervisor started it (monotonic): starts it had to make, for the give-up.
    starts: deque[float] = field(default_factory=deque)
    # The outage now under way: when it stopped answering, when to act, what was said.
    down_since: float | None = None
    attempt_at: float | None = None
    restarted: bool = False
    reported_silent: bool = False
    # Whether it answered since it was last started (a start is not an outage).
    answered: bool = False


class Supervisor:
    def __init__(self, *, max_crashes: int = 5, log: Callable[[str], None] | None = None) -> None:
        self.max_crashes = max_crashes
        self.components: list[Component] = []
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def add(self, component: Component) -> None:
        """Adopt the component if it runs already, else start it; watch it from now on.

        An adopted one must answer within ADOPT_WAIT_S (what follows needs it)."""
        adopted = component.adopt()
        if adopted is None:
            component.start()
            # Answering already (a server's start waits for that), or still starting.
            component.answered = component.health() is Health.UP
        else:
            self.log(f"supervisor: {component.name}: adopted {adopted}")
            deadline = time.monotonic() + ADOPT_WAIT_S
            while component.health() is not Health.UP:
                if time.monotonic() > deadline:
                    raise GaveUp(
                        f"{component.name} ({adopted}) did not answer within {ADOPT_WAIT_S:.0f} s"
                    )
                time.sleep(0.1)
            component.answered = True
        self.components.append(component)

    def check(self, now: float | None = None) -> None:
        """Look at each component's health; adopt what came back, restart what is down
        (when its backoff is over); GaveUp if one keeps dying. `now`: time.monotonic()."""
        for component in self.components:
            self._check(component, time.monotonic() if now is None else now)

    def _check(self, component: Component, now: float) -> None:
        health = component.health()
        if health is Health.UP:
            if component.down_since is not None and component.answered:
                how = (
                    "started again by the supervisor"
                    if component.restarted
                    else "back by itself (restarted in place, by someone else, or no longer "
                    "busy): kept as it is, nothing counted"
                )
                self.log(
                    f"supervisor: {component.name} answers again "
                    f"{now - component.down_since:.1f} s after it stopped, {how}"
                )
            component.down_since = component.attempt_at = None
            component.restarted = component.reported_silent = False
            component.answered = True
            return
        if component.down_since is None:
            component.down_since = now
            component.attempt_at = now + self._backoff(component, now)
            if health is Health.DOWN:
                self.log(f"supervisor: {component.name} is not running")
            elif component.answered:
                self.log(f"supervisor: {component.name} does not answer")
        if health is Health.SILENT:
            # Its process runs: it may answer again by itself, and a second start would
            # fail or, worse, compete for its data. Waited for, never counted.
            if not component.reported_silent and now - component.down_since > SILENT_REPORT_S:
                component.reported_silent = True
                self.log(
                    f"supervisor: {component.name} runs but has not answered for "
                    f"{now - component.down_since:.0f} s; waiting for it"
                )
            return
        if component.attempt_at is not None and now < component.attempt_at:
            return
        self._start_again(component, now)

    def _backoff(self, component: Component, now: float) -> float:
        self._forget_old_starts(component, now)
        return min(BACKOFF_FIRST_S * float(2 ** len(component.starts)), BACKOFF_MAX_S)

    def _forget_old_starts(self, component: Component, now: float) -> None:
        while component.starts and now - component.starts[0] > CRASH_WINDOW_S:
            component.starts.popleft()

    def _start_again(self, component: Component, now: float) -> None:
        """Adopt it if it runs again, else start it: a start counts towards the give-up."""
        adopted = component.adopt()
        failed = False
        if adopted is None:
            self._forget_old_starts(component, now)
            if len(component.starts) + 1 >= self.max_crashes:
                raise GaveUp(
                    f"{component.name} went down {len(component.starts) + 1} times within "
                    f"{CRASH_WINDOW_S:.0f} s; stopping"
                )
            self.log(f"supervisor: starting {component.name} again")
            try:
                component.start()
            except Exception as error:
                # Started meanwhile by someone else (a start that finds it running): ours.
                adopted = component.adopt()
                if adopted is None:
                    failed = True
                    self.log(f"supervisor: {component.name} did not start: {error}")
            if adopted is None:
                component.starts.append(now)
                component.restarted = not failed
        if adopted is not None:
            self.log(f"supervisor: {component.name}: adopted {adopted}")
        delay = self._backoff(component, now)
        component.attempt_at = now + delay
        if failed:
            self.log(f"supervisor: trying {component.name} again in {delay:.0f} s")

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
            component.starts.clear()
            component.down_since = component.attempt_at = None
            component.restarted = component.reported_silent = component.answered = False
            try:
                component.start()
            except Exception as error:
                self.log(f"supervisor: {component.name} did not start: {error}")
                component.starts.append(time.monotonic())
                component.down_since = time.monotonic()

    def stop_all(self) -> None:
        """Stop every component, the last started first."""
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception as error:
                self.log(f"supervisor: stopping {component.name} failed: {error}")


def process_alive(process: subprocess.Popen[bytes] | None) -> bool:
    return process is not None and process.poll() is None


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
