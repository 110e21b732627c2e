"""The live stream's messages: one bus channel, one shape, numbered, and the ``Publisher``
port the agent's reports and the API's events go through.

Each process numbers the events it publishes: ``source`` names the process's publisher and
``seq`` counts from 1 by one, over every kind of event. A subscriber that sees a number jump
(or reconnects) knows it missed something and reads again what it shows; holes come from a
subscriber too slow for its queue, a Redis outage between workers, or a dropped connection.
"""

from __future__ import annotations

import math
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any, Protocol

from ffe.kv.bus import EventBus

EVENTS = "events"  # the bus channel the WebSocket stream fans out, in every worker


class Publisher(Protocol):
    """Sends one live event (``kind``: decision, fill, equity, agent, ...) to whoever shows
    them: the stream of this process, or of every API worker when it goes through Redis."""

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send the event; never waits for a slow subscriber."""
        ...


class DiscardingPublisher:
    """Publishes nothing: for a process whose events no stream could receive (an agent in a
    process of its own without Redis, whose journal the API reads instead)."""

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Drop the event."""


def event_message(
    kind: str, data: dict[str, Any], source: str = "", seq: int = 0
) -> dict[str, Any]:
    """``{"type", "time", "source", "seq", "data"}``: what every stream client receives.

    Numbers JSON cannot carry (NaN, a hold's target) are sent as null."""
    return {
        "type": kind,
        "time": datetime.now(UTC).isoformat(),
        "source": source,
        "seq": seq,
        "data": _json_safe(data),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class EventPublisher:
    """Publishes this process's events on ``EVENTS``, numbered one by one."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.source = uuid.uuid4().hex[:12]
        self.seq = 0  # the number of the last event published

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Number the event and hand it to the bus, which delivers it here at once (so local
        subscribers get the numbers in order) and then to the other workers."""
        self.seq += 1
        await self.bus.publish(EVENTS, event_message(kind, data, self.source, self.seq))


_publishers: weakref.WeakKeyDictionary[EventBus, EventPublisher] = weakref.WeakKeyDictionary()


def publisher(bus: EventBus) -> EventPublisher:
    """The one publisher of ``bus`` in this process: the API's events and the agent's share
    one sequence."""
    found = _publishers.get(bus)
    if found is None:
        found = _publishers[bus] = EventPublisher(bus)
    return found


async def publish_event(bus: EventBus, kind: str, data: dict[str, Any]) -> None:
    """Publish one numbered event through ``bus``'s publisher."""
    await publisher(bus).publish(kind, data)
