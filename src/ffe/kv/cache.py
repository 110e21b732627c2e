"""Cache for market data and analysis: bytes under a key for a while.

``MemoryCache`` keeps them in this process; ``RedisCache`` shares them between workers and,
when Redis fails, behaves as an empty cache instead of failing the request.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis

from ffe.kv import _codec
from ffe.kv.outage import REDIS_ERRORS, Outage

logger = logging.getLogger(__name__)

#: Called with "hit", "miss" or "error" on each get (the API counts them for /metrics).
CacheObserver = Callable[[str], None]


class Cache(Protocol):
    """Bytes under a key, each for ``ttl_s`` seconds at most."""

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired or unreachable."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_s`` seconds (more than zero)."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key``; nothing happens when it is absent."""
        ...


async def get_json(cache: Cache, key: str) -> Any | None:
    """The JSON value under ``key``, or None when absent (or not JSON: treated as a miss)."""
    data = await cache.get(key)
    if data is None:
        return None
    try:
        return _codec.decode(data)
    except ValueError:
        logger.warning("cache entry %r is not JSON; treated as a miss", key)
        return None


async def set_json(cache: Cache, key: str, value: Any, ttl_s: float) -> None:
    """Keep ``value`` as JSON (datetimes as ISO strings) under ``key`` for ``ttl_s`` seconds."""
    await cache.set(key, _codec.encode(value), ttl_s)


def _check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ValueError(f"cache ttl_s must be more than 0 seconds; got {ttl_s!r}")


class MemoryCache:
    """An in-process cache with TTL expiry that evicts the least recently used key when full."""

    def __init__(
        self,
        max_items: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        observer: CacheObserver | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"MemoryCache max_items must be at least 1; got {max_items}")
        self._max_items = max_items
        self._clock = clock
        self._observer = observer
        # key -> (expiry time on the clock, value); order is least recently used first.
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= self._clock():
            del self._entries[key]
            entry = None
        if entry is None:
            self._report("miss")
            return None
        self._entries.move_to_end(key)
        self._report("hit")
        return entry[1]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` for ``ttl_s`` seconds, evicting the least recently used key if full."""
        _check_ttl(ttl_s)
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_items:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def _report(self, event: str) -> None:
        if self._observer is not None:
            self._observer(event)


class RedisCache:
    """A cache on Redis, shared by every worker; a Redis failure is a miss, never an error.

    Keys are ``prefix + key`` with a Redis TTL (``SET ... PX``), so Redis expires them
    itself. While Redis is down, gets report "error" to the observer and return None, sets
    and deletes do nothing, and ``outage`` keeps the calls from waiting on Redis each time.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str = "ffe:cache:",
        *,
        observer: CacheObserver | None = None,
        outage: Outage | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._observer = observer
        self._outage = outage if outage is not None else Outage()

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired or Redis is unreachable."""
        if self._outage.should_try():
            try:
                value = await self._client.get(self._prefix + key)
            except REDIS_ERRORS as error:
                self._outage.failed(error)
            else:
                self._outage.succeeded()
                self._report("miss" if value is None else "hit")
                # A client made with decode_responses=True answers str.
                return value.encode() if isinstance(value, str) else value
        self._report("error")
        return None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` for ``ttl_s`` seconds; does nothing while Redis is unreachable."""
        _check_ttl(ttl_s)
        # PX takes whole milliseconds; a positive TTL below 1 ms must not become 0 (an error).
        ttl_ms = max(1, round(ttl_s * 1000))
        await self._call(lambda: self._client.set(self._prefix + key, value, px=ttl_ms))

    async def delete(self, key: str) -> None:
        """Forget ``key``; does nothing while Redis is unreachable."""
        await self._call(lambda: self._client.delete(self._prefix + key))

    async def _call(self, command: Callable[[], Any]) -> None:
        # Only gets are reported to the observer, so hits, misses and errors add up to gets.
        if not self._outage.should_try():
            return
        try:
            await command()
        except REDIS_ERRORS as error:
            self._outage.failed(error)
        else:
            self._outage.succeeded()

    def _report(self, event: str) -> None:
        if self._observer is not None:
            self._observer(event)
