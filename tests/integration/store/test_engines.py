"""Engine settings: SQLite pragmas, PostgreSQL pools and PgBouncer mode, URLs, dead servers."""

from __future__ import annotations

import pytest

from ffe.domain.errors import ConfigError, StoreError
from ffe.store import migrate
from ffe.store.database import Database, DatabaseOptions, async_url, mask
from ffe.store.repositories import unit_of_work


async def test_sqlite_when_connected_then_wal_foreign_keys_busy_timeout_full_sync(tmp_path):
    path = tmp_path / "nested" / "dir" / "ffe.db"  # parents are created on first connect
    db = Database(f"sqlite:///{path}", DatabaseOptions(busy_timeout_ms=1234))
    async with db, db.engine.connect() as connection:
        pragmas = {
            name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }

    assert path.is_file()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 1234,
        "synchronous": 2,
    }


def test_database_when_constructed_then_nothing_connects(tmp_path):
    Database("postgresql://nobody@127.0.0.1:9/none")  # nothing listens there: fine until used
    Database(f"sqlite:///{tmp_path / 'later.db'}")

    assert not (tmp_path / "later.db").exists()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x/ffe.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_async_url_when_plain_url_then_async_driver(given, driver):
    assert async_url(given).drivername == driver


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql://u@h/db", "not supported"),
        ("sqlite://", "in-memory"),
        ("not a url", "not a URL"),
    ],
)
def test_async_url_when_unusable_then_config_error_says_what_works(given, message):
    with pytest.raises(ConfigError, match=message):
        async_url(given)


def test_mask_when_password_in_url_then_hidden():
    assert "s3cret" not in mask("postgresql://app:s3cret@db.example:5432/ffe")
    assert "app" in mask("postgresql://app:s3cret@db.example:5432/ffe")


async def test_postgres_when_nothing_listens_then_store_error_with_hint():
    async with Database("postgresql://ffe:pw@127.0.0.1:9/ffe") as db:
        with pytest.raises(StoreError, match="is the server running") as caught:
            await db.ping()
    assert "pw" not in str(caught.value).replace("postgresql", "")


async def test_postgres_when_pgbouncer_mode_then_pooled_and_no_statement_cache(postgres_url):
    options = DatabaseOptions(pgbouncer=True, pool_size=3, max_overflow=2)
    async with Database(postgres_url, options) as db:
        # A pool of client connections still: a new one costs PgBouncer's login handshake.
        assert db.engine.pool.size() == 3
        assert db.engine.pool._max_overflow == 2
        await migrate.upgrade(db)
        async with unit_of_work(db) as uow:
            run = await uow.runs.add(kind="backtest", strategy="s", code_version="t")
        async with unit_of_work(db) as uow:
            assert (await uow.runs.get(run.id)).strategy == "s"
        async with db.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            # asyncpg's own statement cache is off, so nothing outlives a transaction
            assert raw.driver_connection._stmt_cache.get_max_size() == 0


async def test_postgres_when_pooled_then_pool_settings_applied(postgres_url):
    options = DatabaseOptions(pool_size=3, max_overflow=2, pool_timeout=4.0)
    async with Database(postgres_url, options) as db:
        await db.ping()
        assert db.engine.pool.size() == 3
        assert db.engine.pool._max_overflow == 2
        assert db.engine.pool._timeout == 4.0
