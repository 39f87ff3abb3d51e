"""A file cut into chunks by arithmetic in the web process, at record boundaries on the worker.

A kind that reads an upload splits it with `byte_ranges` (O(chunks), the file is never
opened), so previewing or creating a job costs the same for 1 KB as for 1 GB. The chunk
that runs on a worker finds its own records with `Records.owned_range`, the classic way:
a chunk owns the records that START in its byte range. It skips a partial first record
unless the byte before its start ends one, and reads past its stop to finish its last.
Every record is read by exactly one chunk whatever the cuts, so the chunks' results equal
one pass over the whole file, and a retried chunk reads the same records again.

A record ends just after a separator byte. Separators are ASCII, which never occurs
inside a multibyte UTF-8 sequence, so every owned range decodes on its own.
"""

from __future__ import annotations

from typing import IO

# Bytes read at a time while looking for a separator.
SCAN = 1 << 20
_MARK, _OTHER = b"\x01", b"\x00"


def byte_ranges(size: int, chunks: int) -> list[tuple[int, int]]:
    """[0, size) in min(chunks, size) contiguous, non-empty ranges ([(0, 0)] for no bytes).

    Pure arithmetic: where records start is for each chunk to find (`Records.owned_range`).
    """
    parts = max(1, min(chunks, size))
    return [(size * i // parts, size * (i + 1) // parts) for i in range(parts)]


class Records:
    """Records that end just after any of `separators` (ASCII bytes), e.g. b"\\n" for lines."""

    def __init__(self, separators: bytes) -> None:
        if not separators or any(byte > 0x7F for byte in separators):
            raise ValueError("separators must be ASCII bytes (never inside a UTF-8 sequence)")
        self.separators = separators
        # One separator: bytes.find (memchr); several: one translate pass, then a find.
        self._table = bytes.maketrans(
            bytes(range(256)),
            b"".join(_MARK if byte in separators else _OTHER for byte in range(256)),
        )

    def _find(self, block: bytes) -> int:
        if len(self.separators) == 1:
            return block.find(self.separators)
        return block.translate(self._table).find(_MARK)

    def record_start(self, handle: IO[bytes], position: int, limit: int | None = None) -> int:
        """The first offset >= position where a record starts or the file ends (0, just after
        a separator, or the file's length); `limit` when there is none before it.

        Reads from position - 1 up to the first separator, or to `limit` (None: the end).
        """
        if position <= 0:
            return 0
        offset = position - 1
        handle.seek(offset)
        while limit is None or offset < limit:
            want = SCAN if limit is None else min(SCAN, limit - offset)
            block = handle.read(want)
            if not block:  # the end of the file (never before position: a shorter file)
                return max(offset, position)
            found = self._find(block)
            if found >= 0:
                return offset + found + 1
            offset += len(block)
        return limit

    def owned_range(self, handle: IO[bytes], start: int, stop: int) -> tuple[int, int]:
        """The bytes [first, end) of the records that start in [start, stop): first is
        `start` when a record starts there, else the start of the next one; end is just after
        the separator that ends the last one (past `stop`), or the end of the file. An empty
        range (first == end) when no record starts in [start, stop)."""
        if stop <= start:
            return start, start
        first = self.record_start(handle, start, limit=stop)
        if first >= stop:
            return stop, stop
        return first, self.record_start(handle, stop)

    def pieces(self, handle: IO[bytes], first: int, end: int, size: int) -> list[tuple[int, int]]:
        """[first, end) (an owned range) in pieces of about `size` bytes, each ending where a
        record starts, so each decodes and counts on its own. A record longer than `size`
        is one piece."""
        cuts: list[tuple[int, int]] = []
        position = first
        while position < end:
            stop = self.record_start(handle, min(position + size, end), limit=end)
            cuts.append((position, stop))
            position = stop
        return cuts
