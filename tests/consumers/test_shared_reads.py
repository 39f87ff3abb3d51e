"""Reads every socket of a daphne process shares (jobs.sockets.shared): one read per key
at a time, its answer reused while young, a failure never kept."""

from __future__ import annotations

import asyncio

import pytest

from jobs.sockets.shared import SharedRead

pytestmark = pytest.mark.consumers


async def test_sockets_asking_at_once_share_one_read() -> None:
    reads: list[int] = []
    release = asyncio.Event()

    async def read(key: int) -> str:
        reads.append(key)
        await release.wait()
        return f"job {key}"

    shared: SharedRead[int, str] = SharedRead(read, max_age_s=60)
    waiting = [asyncio.ensure_future(shared.get(7)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["job 7"] * 5
    assert await shared.get(7) == "job 7"  # still young: not read again
    assert await shared.get(8) == "job 8"
    assert reads == [7, 8]


async def test_an_old_answer_is_read_again() -> None:
    reads: list[int] = []

    async def read(key: int) -> int:
        reads.append(key)
        return len(reads)

    shared: SharedRead[int, int] = SharedRead(read, max_age_s=0)
    assert await shared.get(1) == 1
    await asyncio.sleep(0.01)
    assert await shared.get(1) == 2


async def test_a_failed_read_reaches_every_asker_and_is_not_kept() -> None:
    calls = 0

    async def read(key: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("no database")
        return calls

    shared: SharedRead[int, int] = SharedRead(read, max_age_s=60)
    first = await asyncio.gather(shared.get(1), shared.get(1), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in first)
    assert await shared.get(1) == 2
    assert calls == 2
