"""Migrations on SQLite and PostgreSQL: up, down, up again, and models == migrations."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from ffe.domain.errors import StoreError
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import Base


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names = await connection.run_sync(lambda c: inspect(c).get_table_names())
    return set(names) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade_when_run_then_schema_follows(database_url):
    async with Database(database_url) as db:
        assert await migrate.current(db) is None

        assert await migrate.upgrade(db) == migrate.head()
        assert await _tables(db) == set(Base.metadata.tables)

        assert await migrate.downgrade(db, "base") is None
        assert await _tables(db) == set()

        assert await migrate.upgrade(db) == migrate.head()
        assert await _tables(db) == set(Base.metadata.tables)


async def test_models_and_migrations_when_at_head_then_autogenerate_finds_nothing(database_url):
    async with Database(database_url) as db:
        await migrate.upgrade(db)

        assert await migrate.pending_changes(db) == []


async def test_models_and_migrations_when_schema_differs_then_difference_found(database_url):
    # The agreement check above must be able to fail: drop an index behind Alembic's back.
    async with Database(database_url) as db:
        await migrate.upgrade(db)
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("DROP INDEX ix_decisions_run_id_id")

        changes = await migrate.pending_changes(db)

    assert any("ix_decisions_run_id_id" in str(change) for change in changes)


async def test_ensure_schema_when_behind_and_no_auto_upgrade_then_says_run_upgrade(database_url):
    async with Database(database_url) as db:
        with pytest.raises(StoreError, match="ffe db upgrade"):
            await migrate.ensure_schema(db, auto_upgrade=False)
        assert await migrate.current(db) is None  # nothing was done behind the user's back

        await migrate.ensure_schema(db, auto_upgrade=True)
        assert await migrate.current(db) == migrate.head()


async def test_ensure_schema_when_revision_unknown_then_refuses(database_url):
    async with Database(database_url) as db:
        await migrate.upgrade(db)
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")

        with pytest.raises(StoreError, match="newer ffe"):
            await migrate.ensure_schema(db, auto_upgrade=True)


async def test_history_when_listed_then_head_and_current_marked(database_url):
    async with Database(database_url) as db:
        await migrate.upgrade(db)
        revisions = await migrate.history(db)

    assert revisions[0].id == migrate.head()
    assert revisions[0].is_head
    assert revisions[0].is_current
    assert revisions[-1].down is None


def test_upgrade_when_processes_start_on_a_new_database_at_once_then_all_succeed(database_url):
    """Four processes migrate a new database at the same instant: each finds it empty and
    creates the tables, and those that lose the race find it migrated instead of failing
    (before: "table alembic_version already exists")."""
    script = Path(__file__).parents[2] / "support" / "migrate_race.py"
    start_at = time.time() + 8  # after every process has imported ffe, even on a busy machine
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), database_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    got = [worker.communicate(timeout=120) for worker in workers]

    assert [out.strip() for out, _ in got] == ["ok"] * 4, got
    db = Database(database_url)
    try:
        assert asyncio.run(migrate.current(db)) == migrate.head()
    finally:
        asyncio.run(db.dispose())


def test_quick_head_when_read_from_the_scripts_then_alembic_agrees():
    assert migrate._quick_head() == migrate.head()


async def test_ensure_schema_when_at_head_then_quick_path_reads_the_revision(database_url):
    async with Database(database_url) as db:
        assert await migrate._quick_current(db) is None  # empty: Alembic decides
        await migrate.ensure_schema(db, auto_upgrade=True)

        assert await migrate._quick_current(db) == migrate.head()
        await migrate.ensure_schema(db, auto_upgrade=False)  # at head: nothing to do
        assert await migrate.current(db) == migrate.head()
