"""With Redis killed mid-run the backends degrade instead of failing: the cache misses, rate
limits count in each process, events reach this process only. Started again on the same port,
Redis is used again without any restart of ours. Runs on a private redis-server, with a
password that must never show."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import pytest

from ffe.kv import CacheObserver, KvBackends, KvUnavailableError, Subscription, make_backends

RETRY_AFTER_S = 0.1
PER_CALL_LIMIT_S = 2.0
T = TypeVar("T")


class RedisServer(Protocol):
    """The private server of the ``redis_server`` fixture."""

    url: str
    password: str

    def start(self) -> None: ...
    def kill(self) -> None: ...


Backends = Callable[..., KvBackends]  # (observer=None) -> KvBackends


@pytest.fixture
async def open_backends(redis_server: RedisServer) -> AsyncIterator[Backends]:
    """Call it for backends on the private server (another "worker" each); all are closed."""
    made: list[KvBackends] = []

    def make(observer: CacheObserver | None = None) -> KvBackends:
        made.append(make_backends(redis_server.url, observer=observer, retry_after_s=RETRY_AFTER_S))
        return made[-1]

    yield make
    for backends in made:
        await backends.close()


async def timed(call: Awaitable[T]) -> T:
    """The call's result, failing the test when it took the time of a hung Redis."""
    started = time.monotonic()
    result = await call
    assert time.monotonic() - started < PER_CALL_LIMIT_S
    return result


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 10) -> T:
    """Retry ``probe`` until it gives something other than None (Redis back and used)."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = await probe()
            if result is not None:
                return result
            await asyncio.sleep(RETRY_AFTER_S)


async def test_get_when_redis_stopped_then_miss_without_raising_and_recovers(
    redis_server: RedisServer,
    open_backends: Backends,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG, logger="ffe.kv")
    events: list[str] = []
    backends = open_backends(observer=events.append)
    await backends.cache.set("k", b"v", ttl_s=60)
    assert await backends.cache.get("k") == b"v"

    redis_server.kill()
    misses = []
    for _ in range(5):
        misses.append(await timed(backends.cache.get("k")))
        await timed(backends.cache.set("k", b"v2", ttl_s=60))
        await asyncio.sleep(RETRY_AFTER_S)

    assert misses == [None] * 5
    assert events[0] == "hit"
    assert events[1:] == ["error"] * 5
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "redis unreachable" in warnings[0].getMessage()

    redis_server.start()

    async def stored() -> bytes | None:
        await backends.cache.set("k", b"back", ttl_s=60)
        return await backends.cache.get("k")

    assert await eventually(stored) == b"back"
    assert "reachable again" in caplog.text
    assert redis_server.password not in caplog.text


async def test_hit_when_redis_stopped_then_falls_back_to_limit_per_process_and_recovers(
    redis_server: RedisServer, open_backends: Backends
):
    worker = open_backends()
    assert (await worker.limiter.hit("client-1", limit=3, window_s=60)).remaining == 2

    redis_server.kill()
    decisions = [
        await timed(worker.limiter.hit("client-1", limit=3, window_s=60)) for _ in range(4)
    ]

    # The fallback counts from zero in this process: three allowed, then denied, no error.
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].reset_s > 0

    redis_server.start()
    other_worker = open_backends()
    attempts = itertools.count()

    async def shared() -> bool | None:
        key = f"client-{next(attempts)}"  # fresh, so neither counter has seen it
        before = await worker.limiter.hit(key, limit=100, window_s=60)
        await other_worker.limiter.hit(key, limit=100, window_s=60)
        after = await worker.limiter.hit(key, limit=100, window_s=60)
        # Only one counter shared by both workers sees the other worker's hit.
        return True if before.remaining - after.remaining == 2 else None

    assert await eventually(shared)


async def next_message(subscription: Subscription, timeout_s: float = 2.0) -> dict[str, object]:
    async with asyncio.timeout(timeout_s):
        return await subscription.get()


async def test_publish_when_redis_stopped_then_local_delivery_and_resubscribed_when_back(
    redis_server: RedisServer, open_backends: Backends, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="ffe.kv")
    publisher, receiver = open_backends(), open_backends()
    local = publisher.bus.subscribe("fills")
    async with receiver.bus.subscribe("fills") as remote:
        await publisher.bus.publish("fills", {"n": 0})
        assert await next_message(remote) == {"n": 0}
        assert await next_message(local) == {"n": 0}

        redis_server.kill()
        for n in range(1, 4):
            await timed(publisher.bus.publish("fills", {"n": n}))
            await asyncio.sleep(RETRY_AFTER_S)

        assert [await next_message(local) for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
        with pytest.raises(TimeoutError):
            await next_message(remote, timeout_s=0.2)

        redis_server.start()

        async def crossed() -> dict[str, object] | None:
            await publisher.bus.publish("fills", {"n": "back"})
            try:
                return await next_message(remote, timeout_s=RETRY_AFTER_S)
            except TimeoutError:
                return None

        assert await eventually(crossed) == {"n": "back"}
    outages = [r for r in caplog.records if "redis unreachable" in r.getMessage()]
    assert len(outages) == 2  # one per worker, not one per call
    assert redis_server.password not in caplog.text


async def test_ping_when_redis_stopped_then_clear_error_without_password(
    redis_server: RedisServer, open_backends: Backends
):
    backends = open_backends()
    assert (await backends.ping()).startswith("redis at redis://***@127.0.0.1:")

    redis_server.kill()
    with pytest.raises(KvUnavailableError) as raised:
        await timed(backends.ping())

    message = str(raised.value)
    assert "does not answer" in message
    assert "FFE__REDIS__URL" in message
    assert redis_server.password not in message
