"""A cache in the journal (table ``cache_entries``): what processes on one machine share when
no Redis is configured, such as the analyses ``ffe precompute`` computes and ``ffe serve`` reads.

``JournalCache`` has the methods of ``ffe.kv``'s ``Cache`` (bytes under a key for a while), so
either can be handed to whoever reads or writes the cache; it does not import ``ffe.kv`` (the
store and the kv backends are independent stages). Values must be JSON: the table keeps them as
documents (JSONB on PostgreSQL), so they read back as the same JSON value, not the same bytes
(PostgreSQL orders an object's keys its own way).

Unlike Redis, a journal that fails is not a miss: ``StoreError`` is raised, so the API answers
503 as it does for any request needing the journal, and the pre-compute counts a failed refresh
instead of believing it stored what it lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ffe.store.database import Database
from ffe.store.models import CacheEntry
from ffe.store.types import utc_now

#: The longest key the table holds.
MAX_KEY_LENGTH = 255
#: Expired entries are deleted at most this often (seconds), by the set that comes next.
PURGE_EVERY_S = 300.0


def _no_constant(name: str) -> Any:
    raise ValueError(f"cached JSON holds {name}: JSON has no such number; store null instead")


def _document(value: bytes) -> Any:
    """The JSON document in ``value``; ValueError when it is not strict JSON."""
    try:
        return json.loads(value, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ValueError(f"a journal cache value must be UTF-8 JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        problem = f"a journal cache value must be JSON ({exc}); got {value[:40]!r}"
        raise ValueError(problem) from None


class JournalCache:
    """JSON documents under a key for ``ttl_s`` seconds, in the journal's ``cache_entries``.

    An expired entry reads as missing; expired entries are deleted on a set at most every
    ``purge_every_s`` seconds (any process's set purges every process's leftovers). ``clock``
    is the UTC wall clock (tests pass their own); ``observer``, if given, is told "hit" or
    "miss" on each get and "error" when the journal fails."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utc_now,
        purge_every_s: float = PURGE_EVERY_S,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self._clock = clock
        self._purge_every = timedelta(seconds=purge_every_s)
        self._observer = observer
        self._purged_at: datetime | None = None

    async def get(self, key: str) -> bytes | None:
        """The value as compact JSON bytes, or None when absent or expired."""
        query = select(CacheEntry.value, CacheEntry.expires_at).where(CacheEntry.key == key)
        try:
            async with self.db.session() as session:
                row = (await session.execute(query)).one_or_none()
        except Exception:
            self._report("error")
            raise
        if row is None or row.expires_at <= self._clock():
            self._report("miss")
            return None
        self._report("hit")
        return json.dumps(row.value, separators=(",", ":"), allow_nan=False).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep the JSON in ``value`` under ``key`` for ``ttl_s`` seconds (more than zero),
        replacing what was there; ValueError when ``value`` is not JSON."""
        if not ttl_s > 0:
            raise ValueError(f"cache ttl_s must be more than 0 seconds; got {ttl_s!r}")
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"a journal cache key has at most {MAX_KEY_LENGTH} characters")
        document = _document(value)
        now = self._clock()
        expires = now + timedelta(seconds=ttl_s)
        insert = (postgresql.insert if not self.db.is_sqlite else sqlite.insert)(CacheEntry)
        upsert = insert.values(key=key, value=document, expires_at=expires).on_conflict_do_update(
            index_elements=[CacheEntry.key], set_={"value": document, "expires_at": expires}
        )
        async with self.db.session() as session:
            await session.execute(upsert)
        if self._purged_at is None or now - self._purged_at >= self._purge_every:
            await self.purge()

    async def delete(self, key: str) -> None:
        """Forget ``key``; nothing happens when it is absent."""
        async with self.db.session() as session:
            await session.execute(delete(CacheEntry).where(CacheEntry.key == key))

    async def purge(self) -> int:
        """Delete every expired entry; how many were deleted."""
        now = self._clock()
        async with self.db.session() as session:
            deleted = await session.execute(delete(CacheEntry).where(CacheEntry.expires_at <= now))
        self._purged_at = now
        return int(getattr(deleted, "rowcount", 0) or 0)

    def _report(self, event: str) -> None:
        if self._observer is not None:
            self._observer(event)
