"""Where the composition root sends an agent's events: the bus of the API it runs in; Redis,
under the configured key prefix, from a process of its own; nowhere without Redis (the API
reads its journal then)."""

from __future__ import annotations

import asyncio
from typing import Any

from ffe import bootstrap
from ffe.config import Settings
from ffe.kv.events import EVENTS, DiscardingPublisher, publisher


async def test_agent_publisher_without_redis_then_the_apis_bus_in_process_and_none_apart():
    kv = bootstrap.kv_backends(Settings())
    try:
        inside = bootstrap.agent_publisher(kv, in_process=True)
        apart = bootstrap.agent_publisher(kv, in_process=False)
        async with kv.bus.subscribe(EVENTS) as events:
            await inside.publish("decision", {"account": "paper"})
            received = await asyncio.wait_for(events.get(), 5)
    finally:
        await kv.close()

    assert inside is publisher(kv.bus)  # one numbering with the API's own events
    assert received["type"] == "decision"
    assert isinstance(apart, DiscardingPublisher)


async def test_agent_publisher_apart_with_redis_then_apis_of_its_prefix_receive_it(
    redis_url, prefix
):
    settings = Settings(redis={"url": redis_url, "key_prefix": prefix})  # type: ignore[arg-type]
    other = Settings(redis={"url": redis_url, "key_prefix": prefix + "x:"})  # type: ignore[arg-type]
    agent, api, stranger = (bootstrap.kv_backends(s) for s in (settings, settings, other))
    try:
        sent = bootstrap.agent_publisher(agent, in_process=False)
        async with api.bus.subscribe(EVENTS) as events, stranger.bus.subscribe(EVENTS) as elsewhere:
            await sent.publish("equity", {"account": "paper", "equity": 1.5})
            received = await asyncio.wait_for(events.get(), 5)
            await sent.publish("equity", {"account": "paper", "equity": 2.5})
            second = await asyncio.wait_for(events.get(), 5)
            leaked = await _within(elsewhere.get(), 0.5)  # the other two came before this
    finally:
        for kv in (agent, api, stranger):
            await kv.close()

    assert (received["type"], received["data"]["equity"]) == ("equity", 1.5)
    assert received["source"] == publisher(agent.bus).source
    assert (received["seq"], second["seq"]) == (1, 2)
    assert leaked is None  # another deployment's prefix hears nothing


async def _within(waiting: Any, seconds: float) -> Any:
    try:
        return await asyncio.wait_for(waiting, seconds)
    except TimeoutError:
        return None
