"""The Redis backends on the test Redis: a cache with Redis TTLs, counters shared by workers,
and events that cross from one client's bus to another's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from ffe.kv import (
    RedisCache,
    RedisEventBus,
    RedisRateLimiter,
    Subscription,
    get_json,
    make_backends,
    set_json,
)

NewClient = Callable[[], Redis]


async def test_get_when_set_then_hit_from_another_client(new_client: NewClient, prefix: str):
    writer, reader = RedisCache(new_client(), prefix), RedisCache(new_client(), prefix)

    await writer.set("bars:SPY", b"\x00bytes", ttl_s=60)

    assert await reader.get("bars:SPY") == b"\x00bytes"


async def test_set_when_ttl_then_redis_expires_the_key(new_client: NewClient, prefix: str):
    client = new_client()
    cache = RedisCache(client, prefix)

    await cache.set("k", b"v", ttl_s=0.2)
    ttl_ms = await client.pttl(f"{prefix}k")
    await asyncio.sleep(0.3)

    assert 0 < ttl_ms <= 200
    assert await cache.get("k") is None


async def test_delete_when_set_then_miss(new_client: NewClient, prefix: str):
    cache = RedisCache(new_client(), prefix)
    await cache.set("k", b"v", ttl_s=60)

    await cache.delete("k")

    assert await cache.get("k") is None


async def test_get_when_observer_then_hit_and_miss_reported(new_client: NewClient, prefix: str):
    events: list[str] = []
    cache = RedisCache(new_client(), prefix, observer=events.append)
    await cache.set("k", b"v", ttl_s=60)

    await cache.get("k")
    await cache.get("absent")

    assert events == ["hit", "miss"]


async def test_get_json_when_set_json_with_datetime_then_iso_string(
    new_client: NewClient, prefix: str
):
    cache = RedisCache(new_client(), prefix)

    await set_json(cache, "analysis", {"at": datetime(2024, 1, 2, tzinfo=UTC)}, 60)

    assert await get_json(cache, "analysis") == {"at": "2024-01-02T00:00:00+00:00"}


async def test_hit_when_two_workers_hit_concurrently_then_never_more_than_limit(
    new_client: NewClient, prefix: str
):
    workers = [RedisRateLimiter(new_client(), prefix) for _ in range(2)]

    decisions = await asyncio.gather(
        *(workers[n % 2].hit("client-1", limit=10, window_s=60) for n in range(60))
    )

    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.remaining for d in allowed) == list(range(10))
    assert all(0 < d.reset_s <= 60 for d in decisions)


async def test_hit_when_window_ended_then_allowed_again(new_client: NewClient, prefix: str):
    limiter = RedisRateLimiter(new_client(), prefix)
    first = await limiter.hit("k", limit=1, window_s=0.2)
    denied = await limiter.hit("k", limit=1, window_s=0.2)

    await asyncio.sleep(0.25)
    again = await limiter.hit("k", limit=1, window_s=0.2)

    assert (first.allowed, denied.allowed, again.allowed) == (True, False, True)
    assert 0 < denied.reset_s <= 0.2


async def test_hit_when_counter_left_without_expiry_then_window_set(
    new_client: NewClient, prefix: str
):
    client = new_client()
    await client.set(f"{prefix}k", 5)

    decision = await RedisRateLimiter(client, prefix).hit("k", limit=10, window_s=60)

    assert decision.remaining == 4
    assert 0 < await client.pttl(f"{prefix}k") <= 60_000


async def test_peek_when_another_worker_counted_then_seen_and_not_counted(
    new_client: NewClient, prefix: str
):
    counting = RedisRateLimiter(new_client(), prefix)
    peeking = RedisRateLimiter(new_client(), prefix)
    for _ in range(3):
        await counting.hit("k", limit=10, window_s=60)

    first, second = await peeking.peek("k"), await peeking.peek("k")

    assert first[0] == second[0] == 3
    assert 0 < first[1] <= 60
    assert await peeking.peek("other") == (0, 0.0)


async def next_message(subscription: Subscription, timeout_s: float = 2.0) -> dict[str, object]:
    async with asyncio.timeout(timeout_s):
        return await subscription.get()


async def test_publish_when_subscriber_on_other_client_then_it_receives(
    new_client: NewClient, prefix: str
):
    publisher, receiver = RedisEventBus(new_client(), prefix), RedisEventBus(new_client(), prefix)
    try:
        async with receiver.subscribe("fills") as subscription:
            assert receiver.listening
            await publisher.publish("fills", {"id": "f-1", "at": datetime(2024, 1, 2, tzinfo=UTC)})

            assert await next_message(subscription) == {
                "id": "f-1",
                "at": "2024-01-02T00:00:00+00:00",
            }
    finally:
        await publisher.close()
        await receiver.close()


async def test_publish_when_subscriber_on_same_bus_then_received_exactly_once(
    new_client: NewClient, prefix: str
):
    bus = RedisEventBus(new_client(), prefix)
    try:
        async with bus.subscribe("c") as subscription:
            await bus.publish("c", {"n": 1})
            await bus.publish("c", {"n": 2})

            received = [await next_message(subscription), await next_message(subscription)]
            with pytest.raises(TimeoutError):
                await next_message(subscription, timeout_s=0.3)
    finally:
        await bus.close()

    assert received == [{"n": 1}, {"n": 2}]


async def test_publish_when_other_channel_then_not_received(new_client: NewClient, prefix: str):
    publisher, receiver = RedisEventBus(new_client(), prefix), RedisEventBus(new_client(), prefix)
    try:
        async with receiver.subscribe("fills") as subscription:
            await publisher.publish("orders", {"n": 1})
            await publisher.publish("fills", {"n": 2})

            assert await next_message(subscription) == {"n": 2}
    finally:
        await publisher.close()
        await receiver.close()


async def test_close_when_last_subscriber_leaves_then_listener_stops(
    new_client: NewClient, prefix: str
):
    bus = RedisEventBus(new_client(), prefix)
    async with bus.subscribe("c"):
        was_listening = bus.listening

    await asyncio.sleep(0)
    assert was_listening
    assert not bus.listening
    await bus.close()


async def test_ping_when_redis_up_then_where_it_lives(redis_url: str, prefix: str):
    backends = make_backends(redis_url, key_prefix=prefix)
    try:
        answer = await backends.ping()
    finally:
        await backends.close()

    assert answer.startswith("redis at redis://")


def listener_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "ffe.kv.bus listener"]


async def test_close_when_closed_while_still_connecting_then_listener_ends(
    new_client: NewClient, prefix: str
):
    # On Python 3.11 redis-py swallows a cancel that lands during its socket write; the bus
    # must stop its listener anyway, at whatever point of connecting the close comes.
    client = new_client()
    for step in range(40):
        bus = RedisEventBus(client, prefix)
        bus.subscribe("c")
        await asyncio.sleep(step * 0.0001)

        async with asyncio.timeout(2):
            await bus.close()

    assert listener_tasks() == []


async def test_close_when_last_subscriber_leaves_while_connecting_then_listener_ends(
    new_client: NewClient, prefix: str
):
    bus = RedisEventBus(new_client(), prefix)
    for step in range(40):
        subscription = bus.subscribe("c")
        await asyncio.sleep(step * 0.0001)
        subscription.close()

    async with asyncio.timeout(2):
        while listener_tasks():
            await asyncio.sleep(0.01)
    await bus.close()


async def test_publish_when_many_at_once_then_other_process_receives_them_in_order(
    new_client: NewClient, prefix: str
):
    publisher, receiver = RedisEventBus(new_client(), prefix), RedisEventBus(new_client(), prefix)
    try:
        async with receiver.subscribe("events") as subscription:
            await asyncio.gather(*(publisher.publish("events", {"n": n}) for n in range(200)))

            received = [(await next_message(subscription))["n"] for _ in range(200)]
    finally:
        await publisher.close()
        await receiver.close()

    assert received == list(range(200))
