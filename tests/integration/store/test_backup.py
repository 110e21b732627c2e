"""Backups and restores: SQLite through the online backup API, PostgreSQL through pg_dump."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from ffe.domain.errors import StoreError
from ffe.store import backup as backup_module
from ffe.store import migrate
from ffe.store.backup import backup, list_backups, restore
from ffe.store.database import Database
from ffe.store.manifest import manifest_path
from ffe.store.models import AuditEntry
from ffe.store.repositories import unit_of_work
from ffe.store.tables import table_digests


def _sqlite(path: Path) -> Database:
    return Database(f"sqlite:///{path.as_posix()}")


def _require_postgres_tools() -> None:
    """Skip without pg_dump/pg_restore on a developer machine; fail under CI=true."""
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not on PATH (install the PostgreSQL client tools)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI=true requires them")
    pytest.skip(reason)


@pytest.fixture
async def journal(tmp_path: Path, fill_journal) -> Database:
    db = _sqlite(tmp_path / "data" / "ffe.db")
    await migrate.upgrade(db)
    await fill_journal(db)
    yield db
    await db.dispose()


async def _audit_actions(db: Database) -> list[str]:
    async with db.session() as session:
        return list((await session.scalars(select(AuditEntry.action))).all())


async def test_backup_when_sqlite_then_named_by_time_with_manifest_and_one_file(journal, tmp_path):
    made = await backup(journal, tmp_path / "backups")

    manifest = json.loads(manifest_path(made).read_text())
    digests = await table_digests(journal)
    assert made.name.startswith("ffe-")
    assert made.suffix == ".db"
    assert manifest["revision"] == migrate.head()
    assert manifest["tables"]["decisions"] == {
        "rows": digests["decisions"].rows,
        "checksum": digests["decisions"].checksum,
    }
    assert manifest["size"] == made.stat().st_size
    with sqlite3.connect(made) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert sorted(p.name for p in made.parent.iterdir()) == [made.name, f"{made.name}.json"]


async def test_backup_when_another_connection_writes_then_each_backup_is_consistent(
    journal, tmp_path
):
    writer, stop, written = _sqlite(journal.sqlite_path), asyncio.Event(), []

    async def write() -> None:
        while not stop.is_set():
            async with unit_of_work(writer) as uow:
                await uow.audit.record("writer", f"write.{len(written)}")
            written.append(1)
            await asyncio.sleep(0)

    async def back_up() -> list[Path]:
        try:
            return [await backup(journal, tmp_path / "backups", keep=10) for _ in range(4)]
        finally:
            stop.set()

    try:
        _, made = await asyncio.gather(write(), back_up())
    finally:
        await writer.dispose()

    assert len(written) > 0
    audit_rows = []
    for path in made:
        manifest = json.loads(manifest_path(path).read_text())
        async with _sqlite(path) as copy:
            digests = await table_digests(copy)
            assert await copy.integrity_problems() == []
        assert {name: d.rows for name, d in digests.items()} == {
            name: table["rows"] for name, table in manifest["tables"].items()
        }
        audit_rows.append(digests["audit_log"].rows)
    assert audit_rows == sorted(audit_rows)
    assert audit_rows[-1] > 3  # the last backup saw rows the writer added


@pytest.mark.parametrize("clock", ["real", "one second"])
async def test_backup_when_more_than_keep_then_only_the_newest_remain(
    journal, tmp_path, monkeypatch, clock
):
    if clock == "one second":  # every backup within one second: told apart by a counter
        second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        monkeypatch.setattr(backup_module, "_now", lambda: second)
    folder = tmp_path / "backups"
    folder.mkdir()
    strangers = [folder / "notes.txt", folder / "other-20200101T000000Z.db"]
    for path in strangers:
        path.write_text("not ours")

    made = [await backup(journal, folder, keep=3) for _ in range(5)]

    assert list_backups(folder, "ffe", "db") == made[-3:]
    assert all(manifest_path(p).is_file() for p in made[-3:])
    assert not any(p.exists() or manifest_path(p).exists() for p in made[:2])
    assert all(p.read_text() == "not ours" for p in strangers)


def test_list_backups_when_names_vary_then_oldest_first_and_only_that_database(tmp_path):
    names = [
        "ffe-20240101T000000Z-2.db",
        "ffe-20231231T235959Z.db",
        "ffe-20240101T000000Z-10.db",
        "ffe-20240101T000000Z.db",
        "ffe-20240101T000000Z.db.json",
        "ffe-copy-20240101T000000Z.db",
        "ffe-20240101T000000Z.dump",
        ".ffe-20240102T000000Z.db.partial",
    ]
    for name in names:
        (tmp_path / name).write_text("")

    found = [p.name for p in list_backups(tmp_path, "ffe", "db")]

    assert found == [
        "ffe-20231231T235959Z.db",
        "ffe-20240101T000000Z.db",
        "ffe-20240101T000000Z-2.db",
        "ffe-20240101T000000Z-10.db",
    ]


async def test_restore_when_sqlite_backup_then_same_rows_verified_and_audited(journal, tmp_path):
    made = await backup(journal, tmp_path / "backups")
    target = _sqlite(tmp_path / "elsewhere" / "restored.db")
    try:
        report = await restore(target, made, actor="tester")
        restored, original = await table_digests(target), await table_digests(journal)
        actions = await _audit_actions(target)
    finally:
        await target.dispose()

    assert {k: v for k, v in restored.items() if k != "audit_log"} == {
        k: v for k, v in original.items() if k != "audit_log"
    }
    assert report.rows == {name: digest.rows for name, digest in original.items()}
    assert actions.count("db.restore") == 1
    assert restored["audit_log"].rows == original["audit_log"].rows + 1


async def test_restore_when_target_holds_rows_then_refused_unless_forced(journal, tmp_path):
    made = await backup(journal, tmp_path / "backups")
    async with unit_of_work(journal) as uow:
        await uow.audit.record("tester", "after.backup")

    with pytest.raises(StoreError, match=r"already holds a journal.*--force"):
        await restore(journal, made)
    assert "after.backup" in await _audit_actions(journal)

    await restore(journal, made, force=True)
    actions = await _audit_actions(journal)
    assert "after.backup" not in actions
    assert actions[-1] == "db.restore"
    assert await journal.integrity_problems() == []


async def test_restore_when_backup_truncated_then_clear_error_and_database_untouched(
    journal, tmp_path
):
    made = await backup(journal, tmp_path / "backups")
    before = await table_digests(journal)
    made.write_bytes(made.read_bytes()[: made.stat().st_size // 2])

    with pytest.raises(StoreError, match=r"damaged or was changed.*nothing was restored"):
        await restore(journal, made, force=True)

    assert await table_digests(journal) == before


async def test_restore_when_backup_is_not_a_database_then_clear_error_and_untouched(
    journal, tmp_path
):
    made = await backup(journal, tmp_path / "backups")
    before = await table_digests(journal)
    made.write_bytes(b"garbage " * 1000)  # and a manifest that agrees, so only SQLite can tell
    manifest = json.loads(manifest_path(made).read_text())
    manifest["size"], manifest["sha256"] = made.stat().st_size, _sha256(made)
    manifest_path(made).write_text(json.dumps(manifest))

    with pytest.raises(StoreError, match="not a readable SQLite database"):
        await restore(journal, made, force=True)

    assert await table_digests(journal) == before
    assert not [p for p in journal.sqlite_path.parent.iterdir() if ".restore-" in p.name]


async def test_restore_when_manifest_missing_then_says_so(journal, tmp_path):
    made = await backup(journal, tmp_path / "backups")
    manifest_path(made).unlink()

    with pytest.raises(StoreError, match=r"has no manifest \(.*\.db\.json\) beside it"):
        await restore(journal, made, force=True)


async def test_restore_when_another_process_has_the_database_open_then_refused(journal, tmp_path):
    made = await backup(journal, tmp_path / "backups")
    before = await table_digests(journal)
    await journal.dispose()
    other = sqlite3.connect(journal.sqlite_path)
    try:
        other.execute("SELECT count(*) FROM runs").fetchall()  # holds the WAL open
        with pytest.raises(StoreError, match="in use by another process"):
            await restore(journal, made, force=True)
    finally:
        other.close()

    assert await table_digests(journal) == before


async def test_restore_when_backup_from_another_engine_then_refused(journal, tmp_path):
    made = await backup(journal, tmp_path / "backups")
    postgres = Database("postgresql://nobody@127.0.0.1:1/nothing")  # never connected to

    with pytest.raises(StoreError, match=r"is a sqlite backup and .* is postgresql"):
        await restore(postgres, made)


async def test_backup_when_pg_dump_missing_then_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    postgres = Database("postgresql://nobody@127.0.0.1:1/nothing")

    with pytest.raises(StoreError, match=r"pg_dump is not on PATH.*postgresql-client"):
        await backup(postgres, tmp_path / "backups")


async def test_backup_and_restore_when_postgres_then_round_trip_with_pg_dump(
    new_postgres_database, fill_journal, tmp_path
):
    _require_postgres_tools()
    source, target = Database(new_postgres_database()), Database(new_postgres_database())
    try:
        await migrate.upgrade(source)
        await fill_journal(source)
        made = await backup(source, tmp_path / "backups", keep=2)
        original = await table_digests(source)
        async with unit_of_work(source) as uow:  # after the backup: gone once restored
            await uow.audit.record("tester", "after.backup")

        await restore(target, made)
        restored = await table_digests(target)
        await restore(source, made, force=True)
        rolled_back = await _audit_actions(source)
        async with unit_of_work(source) as uow:  # sequences came back with the rows
            fresh = await uow.audit.record("tester", "after.restore")
    finally:
        await source.dispose()
        await target.dispose()

    assert made.suffix == ".dump"
    assert {k: v for k, v in restored.items() if k != "audit_log"} == {
        k: v for k, v in original.items() if k != "audit_log"
    }
    assert restored["audit_log"].rows == original["audit_log"].rows + 1
    assert "after.backup" not in rolled_back
    assert rolled_back[-1] == "db.restore"
    assert fresh.id == original["audit_log"].rows + 2


async def test_restore_when_postgres_dump_damaged_then_database_untouched(
    new_postgres_database, fill_journal, tmp_path
):
    _require_postgres_tools()
    db = Database(new_postgres_database())
    try:
        await migrate.upgrade(db)
        await fill_journal(db)
        made = await backup(db, tmp_path / "backups")
        before = await table_digests(db)
        made.write_bytes(made.read_bytes()[:-200])
        manifest = json.loads(manifest_path(made).read_text())
        manifest["size"], manifest["sha256"] = made.stat().st_size, _sha256(made)
        manifest_path(made).write_text(json.dumps(manifest))

        with pytest.raises(StoreError, match="pg_restore failed"):
            await restore(db, made, force=True)
        after = await table_digests(db)
    finally:
        await db.dispose()

    assert after == before


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
