"""LoginBackoff: wrong passwords make their address wait twice as long each time, up to a
cap; the right password starts it afresh; other addresses never wait. Both it and
AuthThrottle count an IPv6 client by its /64."""

from __future__ import annotations

from tests.support.clock import FakeClock

from ffe.api.auth import AuthError
from ffe.api.throttle import AuthThrottle, LoginBackoff, ThrottledError
from ffe.kv import MemoryCache, MemoryRateLimiter


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


async def test_refused_when_ipv6_addresses_share_a_64_then_counted_as_one_client():
    throttle = AuthThrottle(MemoryRateLimiter(), limit=2, window_s=60.0)
    failing = [f"2001:db8:1:2::{n:x}" for n in range(1, 4)]  # one host's /64 holds 2**64

    answers = [await throttle.refused(a, AuthError("invalid key")) for a in failing]
    elsewhere = await throttle.refused("2001:db8:1:3::1", AuthError("invalid key"))

    assert [type(a) for a in answers] == [AuthError, AuthError, ThrottledError]
    assert type(elsewhere) is AuthError  # another /64: another client


async def test_failed_when_ipv6_addresses_share_a_64_then_one_backoff():
    clock = FakeClock()
    backoff = LoginBackoff(MemoryCache(clock=clock), free=1, max_s=60.0, clock=clock)

    await backoff.failed("2001:db8:1:2::1", "admin")
    await backoff.failed("2001:db8:1:2:ffff:ffff:ffff:ffff", "admin")

    assert await backoff.wait_s("2001:db8:1:2::abcd", "admin") == 2.0
    assert await backoff.wait_s("2001:db8:1:3::1", "admin") == 0.0
    assert await backoff.wait_s("198.51.100.7", "admin") == 0.0


async def test_claim_when_guesses_race_past_the_free_tries_then_one_passes_per_step():
    clock = FakeClock()
    backoff = LoginBackoff(
        MemoryCache(clock=clock), free=2, max_s=60.0, clock=clock, limiter=MemoryRateLimiter(clock)
    )
    await backoff.failed("198.51.100.7", "admin")  # the last free try is next

    waits = [await backoff.claim("198.51.100.7", "admin") for _ in range(10)]  # read together

    assert waits.count(0.0) == 1
    assert all(w > 0 for w in waits if w != 0.0)
    assert await backoff.claim("203.0.113.5", "admin") == 0.0  # another address: free


async def test_claim_when_tried_again_after_a_failure_then_not_held_by_the_last_claim():
    clock = FakeClock()
    backoff = LoginBackoff(
        MemoryCache(clock=clock), free=3, max_s=60.0, clock=clock, limiter=MemoryRateLimiter(clock)
    )

    first = await backoff.claim("198.51.100.7", "admin")
    await backoff.failed("198.51.100.7", "admin")
    second = await backoff.claim("198.51.100.7", "admin")  # at once, after one wrong password

    assert (first, second) == (0.0, 0.0)
