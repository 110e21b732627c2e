from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ffe.store import migrate
from ffe.store.database import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty journal on SQLite, then on PostgreSQL."""
    database = Database(database_url)
    await migrate.upgrade(database)
    yield database
    await database.dispose()
