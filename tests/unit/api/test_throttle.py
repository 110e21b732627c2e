"""LoginBackoff: wrong passwords make their address wait twice as long each time, up to a
cap; the right password starts it afresh; other addresses never wait."""

from __future__ import annotations

from tests.support.clock import FakeClock

from ffe.api.throttle import LoginBackoff
from ffe.kv import MemoryCache


async def test_failed_when_past_the_free_ones_then_the_wait_doubles_up_to_the_cap():
    clock = FakeClock()
    backoff = LoginBackoff(MemoryCache(clock=clock), free=2, max_s=8.0, clock=clock)

    waits = [await backoff.failed("198.51.100.7", "admin") for _ in range(7)]

    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert await backoff.wait_s("198.51.100.7", "admin") == 8.0
    assert await backoff.wait_s("203.0.113.5", "admin") == 0.0
    assert await backoff.wait_s("198.51.100.7", "alice") == 0.0


async def test_succeeded_then_the_address_starts_afresh():
    clock = FakeClock()
    backoff = LoginBackoff(MemoryCache(clock=clock), free=1, max_s=60.0, clock=clock)
    for _ in range(3):
        await backoff.failed("198.51.100.7", "admin")

    await backoff.succeeded("198.51.100.7", "admin")

    assert await backoff.wait_s("198.51.100.7", "admin") == 0.0
    assert await backoff.failed("198.51.100.7", "admin") == 1.0
