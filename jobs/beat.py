"""Celery beat's scheduler for people's schedules: django-celery-beat's DatabaseScheduler,
fired by one beat in the cluster at a time, each due run fired once.

- **One scheduler in a cluster.** Every beat (`make run` starts one on each main machine)
  takes a PostgreSQL session advisory lock on a connection of its own before it fires
  anything; the others wait, trying again every `beat_max_loop_interval` (5 s). PostgreSQL
  releases the lock when the holder's session ends: a beat that stops or is killed, or
  whose machine vanishes (its session is ended after `LOCK_IDLE_TIMEOUT_S` without a
  word: `idle_session_timeout`), so another takes over within seconds. The holder checks
  its lock's connection before each fire, so it never fires after losing it.
- **A missed run is run once.** Celery's schedules fire an entry whose last run is older
  than its period once and set its last run to now, however long beat was down; so after
  an outage each schedule fires once, then keeps its rhythm from there.
- **Never twice on a takeover.** A fire's last run time is written to PostgreSQL before
  its message is sent (not at beat's next sync, minutes later), so the beat that takes
  over reads it: a beat killed between the write and the send loses that one fire rather
  than letting two beats send it.

The clock is `app.now()` for the entries and their schedules alike, so a test drives beat
by replacing it (tests/services/test_schedules_beat.py).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

import psycopg
from celery.utils.time import maybe_make_aware
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, connections
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from launcher import parent

logger = logging.getLogger(__name__)

# pg_try_advisory_lock(bigint): one key for the cluster's scheduler ("Beat" in ASCII), in
# the one-key space, apart from the admission's two-key per-person locks.
SCHEDULER_LOCK_KEY = 0x42656174
# The lock's session ends after this long idle (a holder pings it every tick, at most every
# 5 s), so a holder whose machine vanished without closing its connection is replaced.
LOCK_IDLE_TIMEOUT_S = 30


class ClockedEntry(ModelEntry):  # type: ignore[misc]
    """A PeriodicTask's entry that reads the time from `app.now()`, as its schedule does."""

    def __init__(self, model: Any, app: Any = None) -> None:
        super().__init__(model, app=app)
        schedule = getattr(self, "schedule", None)
        if schedule is not None:
            zone = getattr(schedule, "tz", None)
            schedule.nowfun = (lambda: self._now().astimezone(zone)) if zone else self._now

    def _now(self) -> datetime:
        now: datetime = maybe_make_aware(self.app.now())
        return now

    def default_now(self) -> datetime:
        return self._now()

    _default_now = default_now


class SchedulerLock:
    """The cluster's scheduler lock: a PostgreSQL session advisory lock on a connection of
    its own (Django's may be closed between ticks), held while that session lives."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self.conn: psycopg.Connection[Any] | None = None

    def held(self) -> bool:
        """Whether this process holds the lock now: checks the session is alive, else tries
        to take the lock (in a new session if the old one ended)."""
        try:
            if self.conn is not None and not self.conn.closed:
                self.conn.execute("SELECT 1")
                return True
        except psycopg.Error:
            logger.warning("scheduler lock: its connection was lost; trying again")
            self.release()
        try:
            db = connections[self.alias]
            conn = db.get_new_connection(db.get_connection_params())
            conn.autocommit = True
            # PostgreSQL before 14 has no such setting: a vanished holder there waits for
            # the server's TCP keepalives.
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"SET idle_session_timeout = '{LOCK_IDLE_TIMEOUT_S}s'")
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [SCHEDULER_LOCK_KEY]).fetchone()
        except (psycopg.Error, DatabaseError) as error:
            logger.warning("scheduler lock: database unavailable (%s)", error)
            return False
        if not (row and row[0]):
            conn.close()
            return False
        self.conn = conn
        logger.info("scheduler lock taken: this beat fires the schedules")
        return True

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


class CoreboardScheduler(DatabaseScheduler):  # type: ignore[misc]
    """DatabaseScheduler that fires only while it holds the cluster's scheduler lock."""

    Entry = ClockedEntry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock = SchedulerLock()
        self._holding = False
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if parent.supervisor_gone():
            logger.warning("the make run that started this beat has ended: beat stops")
            raise SystemExit(0)  # beat's own loop saves its state and ends
        if not self.lock.held():
            if self._holding:
                logger.warning("scheduler lock lost: this beat stops firing")
            self._holding = False
            return float(self.max_interval)
        if not self._holding:
            # Taken (again): read every schedule afresh, with the last runs the previous
            # holder wrote, before firing anything.
            self._holding = True
            self._initial_read = True
            self._heap = None
        try:
            return float(super().tick(*args, **kwargs))
        except DatabaseError as error:
            # The last run could not be written, so nothing was sent; celery beat's loop
            # would end on the error. Read every schedule afresh at the next tick instead.
            logger.warning("scheduler: database error (%s); reading schedules again", error)
            self._initial_read = True
            self._heap = None
            return float(self.max_interval)

    def reserve(self, entry: Any) -> Any:
        new_entry = super().reserve(entry)
        # Written before the message goes (see the module's docstring); a failed write
        # raises, and beat sends nothing for this entry now. One deleted since beat read it
        # is sent: its fire finds no schedule and does nothing.
        try:
            with contextlib.suppress(ObjectDoesNotExist):
                new_entry.save()
        finally:
            # Not left for beat's sync either: a last run whose write failed was not sent,
            # and the schedule is read afresh (see tick), so it fires at the next tick.
            self._dirty.discard(new_entry.name)
        return new_entry

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lock.release()
