"""MemoryRateLimiter: a fixed window per key that opens at the first hit."""

from __future__ import annotations

import pytest
from tests.support.clock import FakeClock

from ffe.kv import MemoryRateLimiter, RateDecision


async def test_hit_when_within_limit_then_allowed_with_remaining_counting_down():
    limiter = MemoryRateLimiter(clock=FakeClock())

    decisions = [await limiter.hit("client-1", limit=3, window_s=60) for _ in range(3)]

    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.limit == 3 for d in decisions)


async def test_hit_when_over_limit_then_denied_with_reset_until_window_end():
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    await limiter.hit("client-1", limit=2, window_s=60)
    clock.advance(15)
    await limiter.hit("client-1", limit=2, window_s=60)
    clock.advance(5)

    decision = await limiter.hit("client-1", limit=2, window_s=60)

    assert decision == RateDecision(allowed=False, limit=2, remaining=0, reset_s=40.0)


async def test_hit_when_window_ended_then_new_window_allows_again():
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(3):
        await limiter.hit("client-1", limit=2, window_s=10)

    clock.advance(10)
    decision = await limiter.hit("client-1", limit=2, window_s=10)

    assert decision.allowed
    assert decision.remaining == 1
    assert decision.reset_s == 10.0


async def test_hit_when_other_key_exhausted_then_this_key_unaffected():
    limiter = MemoryRateLimiter(clock=FakeClock())
    for _ in range(5):
        await limiter.hit("client-1", limit=1, window_s=60)

    decision = await limiter.hit("client-2", limit=1, window_s=60)

    assert decision.allowed


async def test_hit_when_limit_zero_then_always_denied():
    limiter = MemoryRateLimiter(clock=FakeClock())

    decision = await limiter.hit("k", limit=0, window_s=60)

    assert not decision.allowed
    assert decision.remaining == 0


async def test_hit_when_keys_stopped_hitting_then_swept_after_a_minute():
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for number in range(100):
        await limiter.hit(f"client-{number}", limit=5, window_s=1)

    clock.advance(61)
    await limiter.hit("client-new", limit=5, window_s=1)

    assert len(limiter) == 1


@pytest.mark.parametrize(
    ("limit", "window_s", "message"),
    [
        (-1, 60, "0 or more hits"),
        (5, 0, "window_s must be more than 0"),
        (5, float("inf"), "window_s must be more than 0"),
    ],
)
async def test_hit_when_limit_or_window_invalid_then_value_error(
    limit: int, window_s: float, message: str
):
    limiter = MemoryRateLimiter(clock=FakeClock())

    with pytest.raises(ValueError, match=message):
        await limiter.hit("k", limit, window_s)


async def test_peek_when_hits_counted_then_shows_them_without_counting_one():
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(2):
        await limiter.hit("client-1", limit=5, window_s=60)
    clock.advance(20)

    seen = [await limiter.peek("client-1") for _ in range(3)]

    assert seen == [(2, 40.0)] * 3
    assert await limiter.peek("client-2") == (0, 0.0)


async def test_peek_when_window_ended_then_nothing_counted():
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    await limiter.hit("client-1", limit=5, window_s=10)
    clock.advance(10)

    assert await limiter.peek("client-1") == (0, 0.0)
