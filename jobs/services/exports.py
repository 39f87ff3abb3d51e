"""How many history exports one person has streaming at once: slots held as PostgreSQL
advisory locks.

A slot is a session-level advisory lock on the connection that streams the export, keyed by
the person and the slot's number, so the bound holds across every web process and thread,
and a slot is freed when its export ends (`ExportSlot.release`) or, should that never run,
when the connection closes (a process that dies takes its slots with it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection

from jobs.services.errors import TooMany

# Advisory lock keys: this namespace in the top bits, then the slot, then the person's id
# (the classid/objid that pg_locks shows are the key's high and low 32 bits).
_NAMESPACE = 0x4858 << 48  # "HX": history export
_SLOT_SHIFT = 32


def _slot_key(person_id: int, slot: int) -> int:
    return _NAMESPACE | (slot << _SLOT_SHIFT) | person_id


class ExportSlot:
    """One of a person's export slots, held by this thread's database session."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.held = True

    def release(self) -> None:
        """Free the slot (once; a second call does nothing)."""
        if not self.held:
            return
        self.held = False
        if connection.connection is None:  # closed: PostgreSQL let go of the lock with it
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])


def export_slot_take(*, person: Any, limit: int | None = None) -> ExportSlot:
    """A free export slot of `person` (at most `limit`, COREBOARD_EXPORTS_PER_PERSON by
    default), held by this thread's session until released; TooMany naming the limit when
    all are taken."""
    limit = settings.COREBOARD_EXPORTS_PER_PERSON if limit is None else limit
    with connection.cursor() as cursor:
        for slot in range(limit):
            key = _slot_key(person.pk, slot)
            # Advisory locks nest within a session: one this session already holds (an
            # export it still streams) counts as taken, not as taken again.
            cursor.execute(
                """
                SELECT pg_try_advisory_lock(%(key)s) FROM (SELECT) AS once
                WHERE NOT EXISTS (
                    SELECT FROM pg_locks
                    WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                      AND classid = (%(key)s >> 32)::oid AND objid = (%(key)s & 4294967295)::oid
                      AND objsubid = 1
                )
                """,
                {"key": key},
            )
            row = cursor.fetchone()
            if row is not None and row[0]:
                return ExportSlot(key)
    raise TooMany(
        {
            "exports": [
                f"You have {limit} history export{'s' if limit != 1 else ''} streaming; at "
                f"most {limit} may stream at once per person (COREBOARD_EXPORTS_PER_PERSON). "
                "Try again when one has finished."
            ]
        }
    )
