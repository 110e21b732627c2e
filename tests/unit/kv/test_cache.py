"""MemoryCache: TTL expiry on an injected clock, LRU eviction, observer events, JSON helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from tests.support.clock import FakeClock

from ffe.kv import MemoryCache, get_json, set_json


async def test_get_when_set_and_within_ttl_then_hit():
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("bars:SPY", b"data", ttl_s=10)

    clock.advance(9.9)

    assert await cache.get("bars:SPY") == b"data"


async def test_get_when_ttl_passed_then_miss_and_entry_gone():
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("bars:SPY", b"data", ttl_s=10)

    clock.advance(10)

    assert await cache.get("bars:SPY") is None
    assert len(cache) == 0


async def test_set_when_key_exists_then_value_and_ttl_replaced():
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("k", b"old", ttl_s=1)
    await cache.set("k", b"new", ttl_s=100)

    clock.advance(50)

    assert await cache.get("k") == b"new"


async def test_set_when_full_then_least_recently_used_evicted():
    cache = MemoryCache(max_items=2, clock=FakeClock())
    await cache.set("a", b"1", ttl_s=60)
    await cache.set("b", b"2", ttl_s=60)
    await cache.get("a")  # "b" is now the least recently used

    await cache.set("c", b"3", ttl_s=60)

    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"
    assert await cache.get("c") == b"3"
    assert len(cache) == 2


async def test_delete_when_present_then_miss_and_when_absent_then_no_error():
    cache = MemoryCache(clock=FakeClock())
    await cache.set("k", b"v", ttl_s=60)

    await cache.delete("k")
    await cache.delete("never-set")

    assert await cache.get("k") is None


async def test_get_when_observer_then_reports_hit_and_miss_per_get():
    events: list[str] = []
    cache = MemoryCache(clock=FakeClock(), observer=events.append)
    await cache.set("k", b"v", ttl_s=60)

    await cache.get("k")
    await cache.get("absent")

    assert events == ["hit", "miss"]


@pytest.mark.parametrize("ttl_s", [0, -1, float("nan")])
async def test_set_when_ttl_not_positive_then_value_error(ttl_s: float):
    cache = MemoryCache(clock=FakeClock())

    with pytest.raises(ValueError, match="ttl_s must be more than 0"):
        await cache.set("k", b"v", ttl_s)


def test_memory_cache_when_max_items_zero_then_value_error():
    with pytest.raises(ValueError, match="max_items"):
        MemoryCache(max_items=0)


async def test_set_json_when_datetime_and_decimal_then_get_json_gives_strings():
    cache = MemoryCache(clock=FakeClock())
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

    await set_json(cache, "analysis", {"at": when, "price": Decimal("1.10"), "n": [1, 2]}, 60)

    assert await get_json(cache, "analysis") == {
        "at": "2024-01-02T03:04:05+00:00",
        "price": "1.10",
        "n": [1, 2],
    }


async def test_get_json_when_entry_not_json_then_miss():
    cache = MemoryCache(clock=FakeClock())
    await cache.set("k", b"\xff not json", ttl_s=60)

    assert await get_json(cache, "k") is None


async def test_set_json_when_value_not_serialisable_then_type_error_names_type():
    cache = MemoryCache(clock=FakeClock())

    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        await set_json(cache, "k", {"x": object()}, 60)
