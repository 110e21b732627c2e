"""Rate-limit counters: how many hits a key has left in its window.

Both limiters use a fixed window that opens at a key's first hit and lasts ``window_s``: hits
in it are counted, and once the window ends the next hit opens a new one. A fixed window is
one counter per key, one round trip to Redis and exact under concurrency; the price is that a
client can spend two windows' worth across the boundary between them, which is acceptable for
protecting the API (a sliding window would need a sorted set of every hit per key).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from ffe.kv.outage import REDIS_ERRORS, Outage

# INCR and the expiry in one script, so Redis runs them as one step: two workers can never both
# take the last slot, and a crash between them cannot leave a counter that never expires. A
# counter found without expiry (PTTL < 0: new, or left by someone else) gets the window.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

_SWEEP_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The verdict on one hit: allowed or not, and what is left of the window."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the window ends and the count starts again


class RateLimiter(Protocol):
    """Counts hits per key and says whether each is within ``limit`` per ``window_s``."""

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        """Count one hit on ``key`` and decide it."""
        ...

    async def peek(self, key: str) -> tuple[int, float]:
        """The hits on ``key`` in its current window and the seconds until it ends, without
        counting one: (0, 0.0) when no window is open."""
        ...


def _check(limit: int, window_s: float) -> None:
    if limit < 0:
        raise ValueError(f"rate limit must be 0 or more hits per window; got {limit}")
    if not (window_s > 0 and math.isfinite(window_s)):
        raise ValueError(f"rate-limit window_s must be more than 0 seconds; got {window_s!r}")


def _decide(count: int, limit: int, reset_s: float) -> RateDecision:
    return RateDecision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        reset_s=max(0.0, reset_s),
    )


class MemoryRateLimiter:
    """Fixed-window counters in this process: limits apply per process, not per service."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> (hits in the window, when the window ends on the clock)
        self._windows: dict[str, tuple[int, float]] = {}
        self._next_sweep = clock() + _SWEEP_EVERY_S

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        """Count one hit on ``key`` in its window and decide it."""
        _check(limit, window_s)
        now = self._clock()
        self._sweep(now)
        count, ends = self._windows.get(key, (0, now))
        if ends <= now:
            count, ends = 0, now + window_s
        count += 1
        self._windows[key] = (count, ends)
        return _decide(count, limit, ends - now)

    async def peek(self, key: str) -> tuple[int, float]:
        """The hits on ``key`` in its open window and the seconds it has left."""
        now = self._clock()
        count, ends = self._windows.get(key, (0, now))
        return (count, ends - now) if ends > now else (0, 0.0)

    def _sweep(self, now: float) -> None:
        # Keys that stopped hitting would otherwise stay forever; a pass a minute bounds them.
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        ended = [key for key, (_, ends) in self._windows.items() if ends <= now]
        for key in ended:
            del self._windows[key]


class RedisRateLimiter:
    """Fixed-window counters on Redis, shared by every worker (see the module docstring).

    While Redis is unreachable, hits go to ``fallback`` (by default a ``MemoryRateLimiter``),
    so limits still hold in each process instead of the API failing open or failing requests.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str = "ffe:rl:",
        fallback: RateLimiter | None = None,
        *,
        outage: Outage | None = None,
    ) -> None:
        self._prefix = prefix
        self._fallback: RateLimiter = fallback if fallback is not None else MemoryRateLimiter()
        self._outage = outage if outage is not None else Outage()
        # No round trip here: redis-py loads the script on first use (and after a restart).
        self._script = client.register_script(_HIT_SCRIPT)
        self._client = client

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        """Count one hit on ``key`` across all workers and decide it."""
        _check(limit, window_s)
        if self._outage.should_try():
            # Whole milliseconds, at least one: PEXPIRE 0 would delete the counter.
            window_ms = max(1, math.ceil(window_s * 1000))
            try:
                count, ttl_ms = await self._script(keys=[self._prefix + key], args=[window_ms])
            except REDIS_ERRORS as error:
                self._outage.failed(error)
            else:
                self._outage.succeeded()
                return _decide(int(count), limit, int(ttl_ms) / 1000)
        return await self._fallback.hit(key, limit, window_s)

    async def peek(self, key: str) -> tuple[int, float]:
        """The hits on ``key`` across all workers and the seconds its window has left."""
        if self._outage.should_try():
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.get(self._prefix + key)
                    pipe.pttl(self._prefix + key)
                    count, ttl_ms = await pipe.execute()
            except REDIS_ERRORS as error:
                self._outage.failed(error)
            else:
                self._outage.succeeded()
                if count is None or int(ttl_ms) <= 0:
                    return 0, 0.0
                return int(count), int(ttl_ms) / 1000
        return await self._fallback.peek(key)
