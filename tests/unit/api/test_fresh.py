"""Polled answers at most ``ttl_s`` old: one journal read per key and window, shared between
processes through the cache, and read afresh after this process writes."""

from __future__ import annotations

import asyncio

from ffe.api.fresh import FreshCache
from ffe.kv.cache import MemoryCache


class Journal:
    """What the routes read: a value that changes, and how often it was read."""

    def __init__(self) -> None:
        self.value, self.reads = 1, 0
        self.gate: asyncio.Event | None = None

    async def read(self) -> bytes:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return str(self.value).encode()


async def test_one_read_per_key_within_ttl_shared_by_concurrent_callers():
    journal, cache = Journal(), FreshCache(MemoryCache())
    journal.gate = asyncio.Event()
    callers = [
        asyncio.ensure_future(cache.get("decisions:a", 60.0, journal.read)) for _ in range(8)
    ]
    await asyncio.sleep(0)
    journal.gate.set()
    assert await asyncio.gather(*callers) == [b"1"] * 8
    journal.value = 2
    assert await cache.get("decisions:a", 60.0, journal.read) == b"1"  # within the window
    assert journal.reads == 1
    assert await cache.get("decisions:b", 60.0, journal.read) == b"2"  # another key: read
    assert journal.reads == 2


async def test_expired_answer_is_served_while_one_refresh_runs():
    journal, cache = Journal(), FreshCache(MemoryCache())
    assert await cache.get("k", 0.01, journal.read) == b"1"
    await asyncio.sleep(0.02)
    journal.value = 2
    assert await cache.get("k", 0.01, journal.read) == b"1"  # stale, refresh begun
    await asyncio.gather(*cache.refreshing)
    assert await cache.get("k", 60.0, journal.read) == b"2"
    assert journal.reads == 2


async def test_zero_ttl_reads_every_time():
    journal, cache = Journal(), FreshCache(MemoryCache())
    for _ in range(3):
        await cache.get("k", 0.0, journal.read)
    assert journal.reads == 3


async def test_another_process_reuses_the_shared_copy():
    shared, journal = MemoryCache(), Journal()
    await FreshCache(shared).get("jobs:None:20:0", 60.0, journal.read)
    journal.value = 2
    assert await FreshCache(shared).get("jobs:None:20:0", 60.0, journal.read) == b"1"
    assert journal.reads == 1


async def test_forget_reads_afresh_here_and_ignores_an_older_shared_copy():
    shared, journal = MemoryCache(), Journal()
    mine, theirs = FreshCache(shared), FreshCache(shared)
    await mine.get("jobs:None:20:0", 60.0, journal.read)
    await mine.get("status:", 60.0, journal.read)
    journal.value = 2  # this process submits a job
    await mine.forget("jobs:")
    assert await mine.get("jobs:None:20:0", 60.0, journal.read) == b"2"
    assert await mine.get("status:", 60.0, journal.read) == b"1"  # not forgotten
    # Another process's copy written before the forget is not taken for this key either.
    journal.value = 3
    await theirs.get("jobs:None:50:0", 60.0, journal.read)  # shared copy "3"
    journal.value = 4
    await mine.forget("jobs:")
    assert await mine.get("jobs:None:50:0", 60.0, journal.read) == b"4"


async def test_a_refresh_begun_before_a_forget_is_not_kept():
    journal, cache = Journal(), FreshCache(MemoryCache())
    journal.gate = asyncio.Event()
    before = asyncio.ensure_future(cache.get("jobs:x", 60.0, journal.read))
    await asyncio.sleep(0)
    await cache.forget("jobs:")  # a write lands while that read is under way
    journal.value = 2
    journal.gate.set()
    assert await before == b"2"  # (the read saw the value when it ran)
    journal.value = 3
    assert await cache.get("jobs:x", 60.0, journal.read) == b"3"  # not the pre-forget read's
