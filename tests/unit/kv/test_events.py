"""The live stream's events: numbered one by one per process, over every kind, so a hole is
seen; and always valid JSON (a hold's NaN target is sent as null)."""

from __future__ import annotations

import json
import math

from ffe.kv import MemoryEventBus
from ffe.kv.events import EVENTS, event_message, publish_event, publisher


async def test_publish_when_events_of_several_kinds_then_numbered_one_by_one_from_one_source():
    bus = MemoryEventBus()
    subscription = bus.subscribe(EVENTS)

    for kind in ("decision", "fill", "equity", "agent", "job"):
        await publish_event(bus, kind, {"account": "paper"})
    received = [await subscription.get() for _ in range(5)]

    assert [m["seq"] for m in received] == [1, 2, 3, 4, 5]
    assert {m["source"] for m in received} == {publisher(bus).source}
    assert publisher(bus).seq == 5


async def test_publish_when_another_process_bus_then_numbered_apart():
    here, there = MemoryEventBus(), MemoryEventBus()

    await publish_event(here, "fill", {})
    await publish_event(here, "fill", {})
    await publish_event(there, "fill", {})

    assert (publisher(here).seq, publisher(there).seq) == (2, 1)
    assert publisher(here).source != publisher(there).source


async def test_subscriber_when_too_slow_then_the_numbers_show_the_hole():
    bus = MemoryEventBus(max_queued=2)
    subscription = bus.subscribe(EVENTS)
    last_seen = publisher(bus).seq

    for n in range(5):
        await publish_event(bus, "equity", {"n": n})
    kept = [(await subscription.get())["seq"] for _ in range(2)]

    assert kept == [4, 5]
    assert kept[0] != last_seen + 1  # what the dashboard checks before it reads again


def test_event_message_when_a_hold_has_no_target_then_null_in_strict_json():
    data = {"target": math.nan, "action": "hold", "votes": [{"mean": math.inf}], "n": 1.5}

    message = event_message("decision", data, "abc", 7)
    text = json.dumps(message, allow_nan=False)

    assert json.loads(text)["data"] == {
        "target": None,
        "action": "hold",
        "votes": [{"mean": None}],
        "n": 1.5,
    }
    assert (message["source"], message["seq"]) == ("abc", 7)
