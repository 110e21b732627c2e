"""Answers that many clients poll, read from the journal at most once per ``ttl_s``.

Dashboards and bots poll the same few lists (status, decisions, orders, fills, jobs) and the
portfolio; under load each such request was a journal round trip or several (a connection
check, the statement, the transaction's end), which is what held the API to a few hundred
requests a second behind PgBouncer. ``FreshCache`` keeps each answer, as the JSON bytes sent,
for ``ttl_s`` seconds (``api.list_cache_s``), shared between processes through ``ffe.kv``'s
cache (Redis when configured).

- Once an answer has expired, requests get it while one background read refreshes it, so
  nobody waits on the journal under load; only the first request for a key waits.
- ``forget(prefix)`` drops this process's answers under ``prefix`` and their shared copies,
  and discards refreshes already under way: what a request wrote (a job submitted or
  cancelled, an agent command) is in the next read through this process. Another process
  serves its own copy until it expires (at most ``ttl_s``, plus one refresh).
- ``ttl_s`` 0 reads the journal every time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ffe.kv.cache import Cache
from ffe.service.background import watched

Compute = Callable[[], Awaitable[bytes]]
MAX_KEYS = 1000  # past this many answers held, the oldest half is dropped


class FreshCache:
    """JSON answers at most ``ttl_s`` old (see the module docstring)."""

    def __init__(self, shared: Cache) -> None:
        self.shared = shared
        self._held: dict[str, tuple[float, bytes]] = {}
        self._refreshing: dict[str, asyncio.Task[bytes]] = {}
        self._generation = 0  # moves on each ``forget``: a refresh begun before it is dropped
        self._forgotten: dict[str, float] = {}  # prefix -> when it was last forgotten

    @property
    def refreshing(self) -> list[asyncio.Task[bytes]]:
        """The refreshes under way (waited for when the process closes)."""
        return list(self._refreshing.values())

    async def get(self, key: str, ttl_s: float, compute: Compute) -> bytes:
        """``compute()``'s answer for ``key``, at most ``ttl_s`` old (or being refreshed)."""
        if ttl_s <= 0:
            return await compute()
        held = self._held.get(key)
        if held is not None and time.monotonic() - held[0] < ttl_s:
            return held[1]
        refresh = self._refreshing.get(key)
        if refresh is None:
            task = asyncio.create_task(self._refresh(key, ttl_s, compute, self._generation))
            refresh = watched(task, f"refreshing {key}")
            self._refreshing[key] = refresh
            refresh.add_done_callback(lambda done: self._done(key, done))
        if held is not None:
            return held[1]
        return await asyncio.shield(refresh)

    async def forget(self, prefix: str) -> None:
        """Drop the answers whose key starts with ``prefix``, here and in the shared cache."""
        self._generation += 1
        self._forgotten[prefix] = time.monotonic()
        for key in [k for k in self._refreshing if k.startswith(prefix)]:
            self._refreshing.pop(key, None)  # finishes, but its answer is not kept
        gone = [k for k in self._held if k.startswith(prefix)]
        for key in gone:
            del self._held[key]
        for key in gone:
            await self.shared.delete(key)

    def _written_lately(self, key: str, ttl_s: float) -> bool:
        """Whether ``key`` was forgotten in the last ``ttl_s``: another process's shared copy
        of it may be older than the write, so the journal is read instead."""
        now = time.monotonic()
        return any(
            key.startswith(prefix) and now - when < ttl_s
            for prefix, when in self._forgotten.items()
        )

    def _done(self, key: str, task: asyncio.Task[bytes]) -> None:
        if self._refreshing.get(key) is task:
            del self._refreshing[key]

    async def _refresh(self, key: str, ttl_s: float, compute: Compute, generation: int) -> bytes:
        body = None
        if not self._written_lately(key, ttl_s):
            body = await self.shared.get(key)  # another process may have just read it
        if body is None:
            body = await compute()
            if generation == self._generation:
                await self.shared.set(key, body, ttl_s)
        if generation == self._generation:
            if len(self._held) >= MAX_KEYS:
                for old in sorted(self._held, key=lambda k: self._held[k][0])[: MAX_KEYS // 2]:
                    del self._held[old]
            self._held[key] = (time.monotonic(), body)
        return body
