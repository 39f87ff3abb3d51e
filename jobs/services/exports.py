"""How many history exports stream at once: slots held as PostgreSQL advisory locks.

Two bounds. Per person (COREBOARD_EXPORTS_PER_PERSON): one more export is refused (429).
Everybody together (COREBOARD_EXPORTS_AT_ONCE): PostgreSQL writes that many exports' rows
at a time and the others wait their turn, since an export keeps a core busy while it runs
and the pages of everybody else need the cores too.

A slot is a session-level advisory lock on the connection that streams the export, keyed by
the bound, the slot's number and the person, so the bounds hold across every web process
and thread, and a slot is freed when its export ends (`ExportSlot.release`) or, should that
never run, when the connection closes (a process that dies takes its slots with it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from jobs.selectors import jobs as selectors
from jobs.services.errors import TooMany

# Advisory lock keys: the bound in the top 16 bits, then the slot, then the person's id (0 for
# everybody's); pg_locks shows the key's high and low 32 bits as classid and objid.
_PER_PERSON = 0x4858 << 48  # "HX": a person's history exports
_AT_ONCE = 0x4854 << 48  # "HT": a turn to write rows
_SLOT_SHIFT = 32


class ExportSlot:
    """One slot, held by this thread's database session until released."""

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


def _slot_take(bound: int, owner_id: int, limit: int) -> ExportSlot | None:
    with connection.cursor() as cursor:
        for slot in range(limit):
            key = bound | (slot << _SLOT_SHIFT) | owner_id
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
    return None


def export_slot_take(*, person: Any) -> ExportSlot:
    """A free export slot of `person` (of COREBOARD_EXPORTS_PER_PERSON); TooMany naming
    the limit when all are taken."""
    limit = settings.COREBOARD_EXPORTS_PER_PERSON
    slot = _slot_take(_PER_PERSON, person.pk, limit)
    if slot is not None:
        return slot
    raise TooMany(
        {
            "exports": [
                f"You have {limit} history export{'s' if limit != 1 else ''} streaming; at "
                f"most {limit} may stream at once per person (COREBOARD_EXPORTS_PER_PERSON). "
                "Try again when one has finished."
            ]
        }
    )


def export_turn_try() -> ExportSlot | None:
    """A turn to write an export's rows now (one of COREBOARD_EXPORTS_AT_ONCE, everybody's
    together), or None while all are taken: the caller waits and asks again."""
    return _slot_take(_AT_ONCE, 0, settings.COREBOARD_EXPORTS_AT_ONCE)


# How often an export waiting for its turn asks again.
EXPORT_TURN_POLL_S = 0.05


class HistoryExport:
    """One history CSV export: its pieces (selectors.job_history_csv), the person's export
    slot, and its turn to have its rows written, freed when its rows are all read or when
    it is closed (Django closes a response once sent; on a client's disconnect, see
    AsyncHistoryExport), read or not."""

    def __init__(self, pieces: Generator[bytes, None, None], slot: ExportSlot) -> None:
        self.pieces = pieces
        self.slot = slot
        self.turn: ExportSlot | None = None

    def _turn_release(self) -> None:
        if self.turn is not None:
            self.turn.release()

    def close(self) -> None:
        try:
            self.pieces.close()
        finally:
            self._turn_release()
            self.slot.release()


class SyncHistoryExport(HistoryExport):
    def __iter__(self) -> Iterator[bytes]:
        while (turn := export_turn_try()) is None:
            time.sleep(EXPORT_TURN_POLL_S)
        self.turn = turn
        yield from self.pieces
        self._turn_release()


class AsyncHistoryExport(HistoryExport):
    """For ASGI: Django's handler reads a synchronous iterator to its end, in memory, before
    it sends a byte. Pulling one piece at a time through sync_to_async streams instead, on
    the request's own thread (asgiref gives each request its own), so the connection, its
    COPY and the slots stay the same; the thread waits for PostgreSQL without the GIL, and
    an export waiting for its turn holds no thread at all."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pull = sync_to_async(_next_piece)
        try:
            while (turn := await sync_to_async(export_turn_try)()) is None:
                await asyncio.sleep(EXPORT_TURN_POLL_S)
            self.turn = turn
            while (piece := await pull(self.pieces)) is not None:
                yield piece
        finally:
            # A client that went away cancels the response without closing it.
            await sync_to_async(self.close)()


def _next_piece(pieces: Generator[bytes, None, None]) -> bytes | None:
    return next(pieces, None)


def history_export_open(
    *, person: Any, filters: Mapping[str, Any], asynchronous: bool
) -> SyncHistoryExport | AsyncHistoryExport:
    """The history CSV of `person` with selectors.job_history's `filters`, holding one of
    the person's export slots (TooMany when none is free); iterable (asynchronously for
    ASGI), then closed."""
    slot = export_slot_take(person=person)
    pieces = selectors.job_history_csv(user=person, **filters)
    if asynchronous:
        return AsyncHistoryExport(pieces, slot)
    return SyncHistoryExport(pieces, slot)
