"""Copying a journal between databases: SQLite to PostgreSQL and back, verified."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from ffe.domain.errors import StoreError
from ffe.store import migrate
from ffe.store.copy import VerificationError, copy_database, verify_copy
from ffe.store.database import Database
from ffe.store.models import TABLES, AuditEntry, Decision, EquityPoint, Run
from ffe.store.repositories import unit_of_work
from ffe.store.tables import (
    Checksum,
    normal,
    normal_row,
    primary_key,
    select_rows,
    table_digests,
)


def _sqlite(tmp_path: Path, name: str) -> Database:
    return Database(f"sqlite:///{(tmp_path / name).as_posix()}")


async def _rows(db: Database) -> dict[str, list[tuple]]:
    """Every table's rows, normalized, sorted by primary key in Python."""
    found = {}
    async with db.engine.connect() as connection:
        for table in TABLES:
            rows = (await connection.execute(select_rows(table))).all()
            key = [table.columns.keys().index(c.name) for c in primary_key(table)]
            normalized = [normal_row(row, table) for row in rows]
            found[table.name] = sorted(normalized, key=lambda r: [str(r[i]) for i in key])
    return found


@pytest.fixture
async def source(tmp_path: Path, fill_journal) -> Database:
    db = _sqlite(tmp_path, "source.db")
    await migrate.upgrade(db)
    await fill_journal(db)
    yield db
    await db.dispose()


async def test_copy_when_sqlite_to_postgres_to_sqlite_then_every_row_comes_back(
    source, tmp_path, new_postgres_database
):
    postgres = Database(new_postgres_database())
    back = _sqlite(tmp_path, "back.db")
    try:
        there = await copy_database(source, postgres, batch_size=5)
        again = await copy_database(postgres, back, batch_size=5)

        original, in_postgres, returned = (
            await _rows(source),
            await _rows(postgres),
            await _rows(back),
        )
    finally:
        await postgres.dispose()
        await back.dispose()

    assert all(original[table.name] for table in TABLES), "the fixture fills every table"
    assert in_postgres == original
    assert returned == original
    assert there.ok
    assert again.ok
    assert {t.table: t.copied for t in there.tables} == {
        name: len(rows) for name, rows in original.items()
    }
    assert [t.target for t in again.tables] == [t.target for t in there.tables]


async def test_copy_when_run_twice_then_nothing_duplicates(source, database_url):
    target = Database(database_url)
    try:
        first = await copy_database(source, target, batch_size=4)
        second = await copy_database(source, target, batch_size=4)
        digests = await table_digests(target)
    finally:
        await target.dispose()

    assert sum(t.copied for t in first.tables) > 100
    assert sum(t.copied for t in second.tables) == 0
    assert [t.skipped for t in second.tables] == [t.source.rows for t in first.tables]
    assert {name: d.rows for name, d in digests.items()} == {
        t.table: t.source.rows for t in first.tables
    }


async def test_copy_into_postgres_when_rows_added_afterwards_then_they_get_fresh_ids(
    source, new_postgres_database
):
    postgres = Database(new_postgres_database())
    try:
        await copy_database(source, postgres)
        async with unit_of_work(postgres) as uow:
            copied_max = max((await uow.session.scalars(select(Decision.id))).all())
            run = await uow.runs.add(kind="live", strategy="x", code_version="t")
            await uow.journal.add_decisions(
                run.id, [{"time": datetime.now(UTC), "symbol": "X", "target": 1.0}]
            )
            entry = await uow.audit.record("tester", "after.copy")
            newest = (await uow.journal.last_decisions(run.id, limit=1))[0]
    finally:
        await postgres.dispose()

    assert newest.id == copied_max + 1
    assert entry.id == 4  # three audit rows were copied


async def test_verify_when_a_copied_value_changes_then_the_checksum_catches_it(
    source, database_url
):
    target = Database(database_url)
    try:
        await copy_database(source, target)
        async with target.session() as session:
            first_run = (await session.scalars(select(Run.id).limit(1))).one()
            second_day = datetime(2024, 3, 2, 9, 30, 0, 123456, tzinfo=UTC)
            await session.execute(
                update(EquityPoint)
                .where(EquityPoint.time == second_day, EquityPoint.run_id == first_run)
                .values(equity=EquityPoint.equity + 1e-9)
            )
        with pytest.raises(VerificationError) as caught:
            await verify_copy(source, target)
    finally:
        await target.dispose()

    report = caught.value.report
    assert report.failed == ["equity_points"]
    failed = next(t for t in report.tables if t.table == "equity_points")
    assert failed.source.rows == failed.target.rows
    assert failed.source.checksum != failed.target.checksum
    assert "equity_points" in str(caught.value)


async def test_copy_when_target_row_differs_then_conflict_unless_overwrite(source, database_url):
    target = Database(database_url)
    try:
        await copy_database(source, target)
        async with target.session() as session:
            await session.execute(
                update(AuditEntry).where(AuditEntry.id == 2).values(action="tampered")
            )
        with pytest.raises(StoreError, match=r"table audit_log, row id=2: .* different action"):
            await copy_database(source, target)
        report = await copy_database(source, target, overwrite=True)
        async with unit_of_work(target) as uow:
            actions = [entry.action for entry in await uow.audit.recent()]
    finally:
        await target.dispose()

    audit = next(t for t in report.tables if t.table == "audit_log")
    assert (audit.copied, audit.skipped, audit.overwritten) == (0, 2, 1)
    assert report.ok
    assert "tampered" not in actions


async def test_copy_when_target_has_rows_the_source_lacks_then_verification_fails(source, tmp_path):
    target = _sqlite(tmp_path, "target.db")
    try:
        await copy_database(source, target)
        async with unit_of_work(target) as uow:
            await uow.audit.record("someone", "only.in.target")
        with pytest.raises(
            VerificationError, match=r"audit_log \(3 rows in the source, 4 in the target"
        ):
            await copy_database(source, target)
    finally:
        await target.dispose()


async def test_copy_when_target_at_another_revision_then_refused_and_untouched(
    source, database_url
):
    target = Database(database_url)
    try:
        await migrate.upgrade(target)
        async with target.session() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(StoreError, match=r"target .* revision 9999.*upgrade ffe"):
            await copy_database(source, target)
        async with target.session() as session:
            runs = (await session.execute(select(Run.id))).all()
    finally:
        await target.dispose()

    assert runs == []


async def test_copy_when_source_not_migrated_then_refused(tmp_path):
    empty, target = _sqlite(tmp_path, "empty.db"), _sqlite(tmp_path, "target.db")
    try:
        with pytest.raises(StoreError, match=r"source .* has no schema revision"):
            await copy_database(empty, target)
        assert await migrate.current(target) is None
    finally:
        await empty.dispose()
        await target.dispose()


async def test_copy_when_source_and_target_are_one_database_then_refused(source, tmp_path):
    same = _sqlite(tmp_path, "source.db")
    try:
        with pytest.raises(StoreError, match="same database"):
            await copy_database(source, same)
    finally:
        await same.dispose()


async def test_copy_when_progress_reported_then_every_table_reaches_its_total(source, tmp_path):
    target, seen = _sqlite(tmp_path, "target.db"), {}
    try:
        report = await copy_database(
            source,
            target,
            batch_size=5,
            on_progress=lambda table, done, total: seen.update({table: (done, total)}),
        )
    finally:
        await target.dispose()

    assert list(seen) == [table.name for table in TABLES]
    assert seen == {t.table: (t.source.rows, t.source.rows) for t in report.tables}


async def test_copy_when_json_column_holds_sql_null_or_json_null_then_each_kept(
    tmp_path, database_url
):
    source, target = _sqlite(tmp_path, "nulls.db"), Database(database_url)
    await migrate.upgrade(source)
    async with unit_of_work(source) as uow:
        await uow.runs.add(kind="backtest", strategy="x", code_version="t")  # stats: SQL NULL
        await uow.audit.record("tester", "nothing", details=None)  # details: JSON null
    query = text(
        "SELECT (SELECT count(*) FROM runs WHERE stats IS NULL),"
        " (SELECT count(*) FROM audit_log WHERE details IS NULL)"
    )
    try:
        await copy_database(source, target)
        async with source.engine.connect() as connection:
            before = tuple((await connection.execute(query)).one())
        async with target.engine.connect() as connection:
            after = tuple((await connection.execute(query)).one())
    finally:
        await source.dispose()
        await target.dispose()

    assert before == (1, 0)
    assert after == before


def test_normal_when_same_value_from_either_engine_then_same_form():
    here = datetime(2024, 3, 1, 14, 30, 0, 5, tzinfo=timezone(timedelta(hours=5)))

    assert normal(here) == normal(here.astimezone(UTC)) == ("t", "2024-03-01T09:30:00.000005+00:00")
    assert normal(-0.0) == normal(0.0)
    assert normal(0.1 + 0.2) != normal(0.3)
    assert normal({"b": 1, "a": [1.5, None]}) == normal({"a": [1.5, None], "b": 1})
    assert normal(True) != normal(1)
    assert normal({"x": [-0.0]}) == normal({"x": [0.0]})


def test_checksum_when_rows_added_in_another_order_then_same_and_a_change_shows():
    rows = [(i, ("f", float(i).hex()), f"row {i}") for i in range(50)]
    forward, backward, changed = Checksum(), Checksum(), Checksum()
    for row in rows:
        forward.add(row)
    for row in reversed(rows):
        backward.add(row)
    for row in [*rows[:-1], (49, ("f", (49.5).hex()), "row 49")]:
        changed.add(row)

    assert forward.digest() == backward.digest()
    assert forward.digest().rows == changed.digest().rows == 50
    assert forward.digest().checksum != changed.digest().checksum


async def test_copy_when_source_written_during_the_copy_then_copies_one_snapshot(source, tmp_path):
    target, added = _sqlite(tmp_path, "target.db"), []

    def write_meanwhile(table: str, done: int, total: int) -> None:
        if table == "runs" and done == 0:  # a run and its decisions, after the snapshot began
            with sqlite3.connect(source.sqlite_path) as other:
                other.execute(
                    "INSERT INTO runs (id, kind, strategy, params, symbols, config, code_version,"
                    " status, started_at) VALUES (?, 'live', 'x', '{}', '[]', '{}', 't',"
                    " 'running', '2024-01-01 00:00:00.000000')",
                    ("f" * 32,),
                )
                other.execute(
                    "INSERT INTO decisions (run_id, time, symbol, target, created_at)"
                    " VALUES (?, '2024-01-01 00:00:00.000000', 'X', 1.0,"
                    " '2024-01-01 00:00:00.000000')",
                    ("f" * 32,),
                )
            added.append(table)

    try:
        first = await copy_database(source, target, on_progress=write_meanwhile)
        second = await copy_database(source, target)
    finally:
        await target.dispose()

    assert added == ["runs"]
    assert first.ok
    copied = {t.table: t.copied for t in second.tables}
    assert (copied["runs"], copied["decisions"]) == (1, 1)
    assert sum(copied.values()) == 2
