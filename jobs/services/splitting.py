"""A kind's `split`, run in the web process under a CPU budget (COREBOARD_SPLIT_CPU_MS).

`split` runs where a job is previewed or created: in daphne, in the thread that serves
every synchronous view of that process, so a split that reads its input holds up everybody's
pages for as long as it reads (issue 21: 126 s for one preview of a 20 MB file). The
contract (docs/job-kinds.md) is that `split` is arithmetic on the parameters and the chunks
read the input; the built-in kinds keep it (jobs.kinds.records). This is the guard for
kinds that do not: a timer checks the CPU time of the thread running `split`, and past the
budget raises `SplitOverBudget` inside it (CPython's asynchronous exception, delivered at
the thread's next bytecode; a single long C call, e.g. one read() of a whole file, ends
first). The request is refused naming the kind and the budget, and nothing is stored.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Any

from django.conf import settings

from jobs import kinds
from jobs.kinds.base import Params, Spec
from jobs.services.errors import Rejected

logger = logging.getLogger(__name__)


class SplitOverBudget(BaseException):
    """Raised asynchronously into a thread whose split ran past its CPU budget; a
    BaseException, so that a kind's `except Exception` does not swallow it."""


def kind_split(*, kind: kinds.JobKind, params: Params) -> list[Spec]:
    """`kind.split(params)` as a list; Rejected on `kind` when it takes more CPU than
    COREBOARD_SPLIT_CPU_MS (the kind's own ValidationError passes through)."""
    watch = _Watch(settings.COREBOARD_SPLIT_CPU_MS / 1000)
    try:
        try:
            specs = list(kind.split(params))
        finally:
            over = watch.stop()
        if over:  # it ran past the budget and returned before the exception arrived
            raise SplitOverBudget
    except SplitOverBudget:
        # Delivered in the split, or inside stop() itself: stopping again is then safe,
        # since the exception that was pending is this one.
        watch.stop()
        logger.warning(
            "split of kind %s stopped after %.0f ms of CPU (COREBOARD_SPLIT_CPU_MS=%d)",
            kind.name,
            watch.used() * 1000,
            settings.COREBOARD_SPLIT_CPU_MS,
        )
        raise Rejected(
            {
                "kind": [
                    f"Splitting this {kind.name} job took more than "
                    f"{settings.COREBOARD_SPLIT_CPU_MS:,} ms of CPU "
                    "(COREBOARD_SPLIT_CPU_MS), so it was stopped: the kind's split must "
                    "cut its parameters by arithmetic and leave reading input to its chunks."
                ]
            }
        ) from None
    return specs


class _Watch:
    """Raises SplitOverBudget in the calling thread once its CPU time since now passes
    `budget` seconds, and again every half budget (a kind may catch it), until `stop()`."""

    def __init__(self, budget: float) -> None:
        self.thread_id = threading.get_ident()
        # The thread's CPU clock (Linux); where there is none (macOS), wall time, stricter.
        getclock = getattr(time, "pthread_getcpuclockid", None)
        self.clock = time.CLOCK_MONOTONIC if getclock is None else getclock(self.thread_id)
        self.start = time.clock_gettime(self.clock)
        self.budget = budget
        self.lock = threading.Lock()
        self.stopped = False
        self.fired = False
        self.timer: threading.Timer | None = None
        self._arm(budget)

    def used(self) -> float:
        return time.clock_gettime(self.clock) - self.start

    def _arm(self, delay: float) -> None:
        # CPU time never runs ahead of wall time, so nothing is due before `delay`.
        self.timer = threading.Timer(delay, self._check)
        self.timer.daemon = True
        self.timer.name = "coreboard-split-watch"
        self.timer.start()

    def _check(self) -> None:
        with self.lock:
            if self.stopped:
                return
            left = self.budget - self.used()
            if left <= 0:
                self.fired = True
                _raise_in(self.thread_id, SplitOverBudget)
            self._arm(left if left > 0 else self.budget / 2)

    def stop(self) -> bool:
        """Disarm, and clear a SplitOverBudget not delivered yet; whether one was raised."""
        with self.lock:
            self.stopped = True
            if self.timer is not None:
                self.timer.cancel()
            if self.fired:
                _raise_in(self.thread_id, None)
            return self.fired


def _raise_in(thread_id: int, exception: Any) -> None:
    """Schedule `exception` in the thread, delivered at its next bytecode (None: clear one
    scheduled and not delivered yet)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )
