"""MemoryEventBus: fan-out to every subscriber of a channel; a slow subscriber loses its
oldest messages instead of holding up the publisher."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ffe.kv import MemoryEventBus, SubscriptionClosedError


async def test_publish_when_several_subscribers_then_each_receives_every_message():
    bus = MemoryEventBus()
    first, second = bus.subscribe("fills"), bus.subscribe("fills")

    await bus.publish("fills", {"n": 1})
    await bus.publish("fills", {"n": 2})

    assert [await first.get(), await first.get()] == [{"n": 1}, {"n": 2}]
    assert [await second.get(), await second.get()] == [{"n": 1}, {"n": 2}]


async def test_publish_when_other_channel_then_subscriber_receives_nothing():
    bus = MemoryEventBus()
    subscription = bus.subscribe("fills")

    await bus.publish("orders", {"n": 1})

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await subscription.get()


async def test_publish_when_subscriber_mutates_message_then_others_unaffected():
    bus = MemoryEventBus()
    first, second = bus.subscribe("c"), bus.subscribe("c")
    await bus.publish("c", {"items": [1]})

    (await first.get())["items"].append(2)

    assert await second.get() == {"items": [1]}


async def test_publish_when_datetime_then_subscriber_gets_iso_string():
    bus = MemoryEventBus()
    subscription = bus.subscribe("c")

    await bus.publish("c", {"at": datetime(2024, 1, 2, tzinfo=UTC)})

    assert await subscription.get() == {"at": "2024-01-02T00:00:00+00:00"}


async def test_publish_when_subscriber_slow_then_oldest_dropped_and_counted():
    bus = MemoryEventBus(max_queued=3)
    slow, fast = bus.subscribe("c"), bus.subscribe("c")
    received: list[int] = []
    for n in range(5):
        await bus.publish("c", {"n": n})
        received.append((await fast.get())["n"])

    kept = [(await slow.get())["n"] for _ in range(3)]

    assert kept == [2, 3, 4]
    assert received == [0, 1, 2, 3, 4]
    assert slow.dropped == 2
    assert fast.dropped == 0
    assert bus.dropped == 2


async def test_publish_when_no_one_reads_then_publisher_never_waits():
    bus = MemoryEventBus(max_queued=1)
    bus.subscribe("c")

    async with asyncio.timeout(1):
        for n in range(1000):
            await bus.publish("c", {"n": n})

    assert bus.dropped == 999


async def test_iterate_when_subscription_closed_then_iteration_ends():
    bus = MemoryEventBus()
    received: list[dict[str, object]] = []

    async with bus.subscribe("c") as subscription:
        await bus.publish("c", {"n": 1})
        async for message in subscription:
            received.append(message)
            subscription.close()

    assert received == [{"n": 1}]
    assert bus.subscriber_count == 0


async def test_get_when_waiting_and_bus_closed_then_subscription_closed_error():
    bus = MemoryEventBus()
    subscription = bus.subscribe("c")
    waiting = asyncio.create_task(subscription.get())
    await asyncio.sleep(0)

    await bus.close()

    with pytest.raises(SubscriptionClosedError, match="'c' is closed"):
        await waiting
    assert subscription.closed


async def test_publish_when_subscription_closed_then_it_receives_nothing_and_others_do():
    bus = MemoryEventBus()
    gone, staying = bus.subscribe("c"), bus.subscribe("c")
    gone.close()

    await bus.publish("c", {"n": 1})

    assert await staying.get() == {"n": 1}
    with pytest.raises(SubscriptionClosedError):
        await gone.get()
    assert bus.subscriber_count == 1


async def test_subscribe_when_bus_closed_then_runtime_error():
    bus = MemoryEventBus()
    await bus.close()

    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("c")
