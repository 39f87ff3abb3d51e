"""`make run`'s reload in development: the kinds' sources watched with watchfiles; a change
restarts the Celery worker and daphne, so an edited kind runs again within seconds.

The launcher imports no Django code, so what to watch (the kinds folder, jobs/kinds, the
folders of the modules in COREBOARD_JOB_KINDS and of the `coreboard.kinds` entry points)
comes from `manage.py kinds --json`, asked once at start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import watchfiles

# Edits arrive in bursts (an editor writes a file, a backup, a rename): wait this long for
# quiet before restarting once.
DEBOUNCE_MS = 300
STEP_MS = 50


class KindWatcher:
    """Watches Python files under `paths` in a thread; `changed()` says which changed since
    it was last asked."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = [path for path in paths if path.exists()]
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._changed: set[str] = set()
        self._thread = threading.Thread(target=self._watch, name="kind-watcher", daemon=True)

    def start(self) -> None:
        if self.paths:
            self._thread.start()

    def _watch(self) -> None:
        for changes in watchfiles.watch(
            *self.paths,
            watch_filter=watchfiles.PythonFilter(),
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=self._stop,
            raise_interrupt=False,
            yield_on_timeout=False,
        ):
            with self._lock:
                self._changed.update(path for _, path in changes)
                self._lock.notify_all()

    def changed(self) -> list[str]:
        with self._lock:
            found = sorted(self._changed)
            self._changed.clear()
        return found

    def wait_changed(self, timeout: float) -> list[str]:
        """Like `changed()`, waiting up to `timeout` seconds for a change first."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._changed), timeout=timeout)
        return self.changed()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


def change_note(paths: list[str], base: Path) -> str:
    """`kinds/pricer.py` (and 2 more): the changed files, short."""
    shown = []
    for path in paths[:1]:
        try:
            shown.append(str(Path(path).relative_to(base)))
        except ValueError:
            shown.append(path)
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    return f"{', '.join(shown)}{more}"
