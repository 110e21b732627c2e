"""The journal cache (``cache_entries``), on SQLite and on PostgreSQL: what ``ffe precompute``
and ``ffe serve`` share when no Redis is configured."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ffe.domain.errors import StoreError
from ffe.kv.cache import Cache, get_json, set_json
from ffe.store.cache import JournalCache
from ffe.store.database import Database
from ffe.store.models import CacheEntry

T0 = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


class Clock:
    """UTC wall time that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _rows(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(CacheEntry))).scalar())


async def test_set_then_get_when_json_then_same_value_back(db: Database) -> None:
    cache: Cache = JournalCache(db)  # the kv protocol, satisfied without importing ffe.kv
    value = {"price": 4_700.25, "bands": [[1.5, None]], "name": "ÜBER €", "ok": True, "n": 10**15}

    await set_json(cache, "analysis:SP500", value, 60)

    assert await get_json(cache, "analysis:SP500") == value


@pytest.mark.parametrize("value", [None, [1, "x"], "text", 0, -2.5e-300])
async def test_set_when_any_json_value_then_round_trips(db: Database, value: object) -> None:
    cache = JournalCache(db)

    await cache.set("k", json.dumps(value).encode(), 60)

    assert json.loads(await cache.get("k") or b"missing") == value


async def test_get_when_absent_then_none(db: Database) -> None:
    assert await JournalCache(db).get("never-set") is None


async def test_get_when_ttl_passed_then_none(db: Database) -> None:
    clock = Clock()
    cache = JournalCache(db, clock=clock)
    await cache.set("k", b"[1]", 10)

    clock.advance(9.9)
    assert await cache.get("k") == b"[1]"
    clock.advance(0.1)
    assert await cache.get("k") is None


async def test_set_when_key_exists_then_value_and_expiry_replaced(db: Database) -> None:
    clock = Clock()
    cache = JournalCache(db, clock=clock)
    await cache.set("k", b'{"v":1}', 5)

    await cache.set("k", b'{"v":2}', 60)
    clock.advance(30)

    assert await cache.get("k") == b'{"v":2}'
    assert await _rows(db) == 1


async def test_delete_when_present_or_absent_then_gone(db: Database) -> None:
    cache = JournalCache(db)
    await cache.set("k", b"1", 60)

    await cache.delete("k")
    await cache.delete("k")

    assert await cache.get("k") is None


async def test_set_when_purge_due_then_expired_entries_of_any_writer_deleted(db: Database) -> None:
    clock = Clock()
    other = JournalCache(db, clock=clock)  # another process's leftovers
    await other.set("old-1", b"1", 5)
    await other.set("old-2", b"2", 5)
    mine = JournalCache(db, clock=clock, purge_every_s=300)
    await mine.set("live", b"3", 1000)  # first set: purges (nothing expired yet)

    clock.advance(100)
    await mine.set("live", b"4", 1000)
    assert await _rows(db) == 3  # purged 100 s ago: not again yet
    clock.advance(200)
    await mine.set("live", b"5", 1000)

    assert await _rows(db) == 1
    assert await mine.get("live") == b"5"


async def test_purge_when_called_then_counts_expired_deleted(db: Database) -> None:
    clock = Clock()
    cache = JournalCache(db, clock=clock)
    await cache.set("a", b"1", 5)
    await cache.set("b", b"1", 50)

    clock.advance(10)

    assert await cache.purge() == 1
    assert await cache.get("b") == b"1"


@pytest.mark.parametrize(
    ("value", "says"),
    [(b"not json", "must be JSON"), (b'"\xc3("', "UTF-8"), (b"[NaN]", "holds NaN")],
)
async def test_set_when_not_strict_json_then_value_error_and_nothing_kept(
    db: Database, value: bytes, says: str
) -> None:
    cache = JournalCache(db)

    with pytest.raises(ValueError, match=says):
        await cache.set("k", value, 60)

    assert await _rows(db) == 0


@pytest.mark.parametrize("ttl", [0, -1.0])
async def test_set_when_ttl_not_positive_then_value_error(db: Database, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_s must be more than 0"):
        await JournalCache(db).set("k", b"1", ttl)


async def test_set_when_key_too_long_then_value_error(db: Database) -> None:
    with pytest.raises(ValueError, match="at most 255 characters"):
        await JournalCache(db).set("k" * 256, b"1", 60)


async def test_get_when_observed_then_hits_and_misses_reported(db: Database) -> None:
    seen: list[str] = []
    cache = JournalCache(db, observer=seen.append)
    await cache.set("k", b"1", 60)

    await cache.get("k")
    await cache.get("other")

    assert seen == ["hit", "miss"]


async def test_get_when_journal_fails_then_store_error_and_error_reported(tmp_path: Path) -> None:
    seen: list[str] = []
    missing = tmp_path / "no-such-folder" / "journal.db"
    cache = JournalCache(Database(f"sqlite:///{missing.as_posix()}"), observer=seen.append)

    with pytest.raises(StoreError):
        await cache.get("k")

    assert seen == ["error"]
    await cache.db.dispose()
