"""Processes `make run` starts end when it dies, even by SIGKILL (a parent-death signal).

The supervisor (launcher.run) puts its pid in COREBOARD_SUPERVISOR_PID of the worker's,
beat's and daphne's environment; each calls `exit_with_parent` early in its own startup
(launcher.server for daphne; project.celery's worker_init and beat_init for the worker's
main process and beat), which asks Linux to send it a signal, the one that stops it
cleanly, when its parent ends (prctl PR_SET_PDEATHSIG).

Why in the child's startup and not in a `preexec_fn`: the child may be started as the
service user (Popen's `user=`), and Linux clears the parent-death signal whenever a
process's user or group changes; set in the final process, after every change, it stays.
(`preexec_fn` is also unsafe in a process with threads, which the supervisor has.)

The variable is removed once read, so a process these start (a kind's subprocess) is not
tied to a parent that is not its own. Linux sends the signal when the *thread* that
started the child ends: the supervisor starts its children from its main thread only.
Elsewhere than Linux nothing is set; `make run` then stops leftovers at its next start
(launcher.runfiles).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

SUPERVISOR_PID_ENV = "COREBOARD_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


# The supervisor that started this process, once exit_with_parent has read it.
_supervisor: int | None = None


def exit_with_parent(sig: int) -> bool:
    """Get `sig` when the supervisor that started this process ends; at once when it
    already has. False (and nothing set) when not started by the supervisor or not on
    Linux."""
    global _supervisor
    supervisor = os.environ.pop(SUPERVISOR_PID_ENV, "")
    if not supervisor.isdigit():
        return False
    _supervisor = int(supervisor)
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
            return False
        # It may have ended between our start and the prctl: then no signal would come.
        if os.getppid() != int(supervisor):
            os.kill(os.getpid(), sig)
        return True
    return False


def supervisor_gone() -> bool:
    """Whether the supervisor that started this process (as exit_with_parent read it) has
    ended: for a process that also looks for itself, where it loops anyway (beat, at each
    tick), should the signal not come (not Linux, or lost: a fresh machine's suite once
    saw beat outlive its `make run` by 20 s)."""
    return _supervisor is not None and os.getppid() != _supervisor
