"""The journal, its WAL and shared memory, its backups and their manifests are readable by
their owner only (0600), in folders only the owner can enter (0700), whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffe.store import migrate
from ffe.store.backup import backup, restore
from ffe.store.database import Database
from ffe.store.manifest import manifest_path
from ffe.store.repositories import unit_of_work


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """The common umask (group and others may read): what the old code created 0644 under."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def test_journal_when_created_then_file_wal_and_shm_0600_in_a_0700_folder(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = Database(f"sqlite:///{(data / 'ffe.db').as_posix()}")
    try:
        await migrate.upgrade(db)
        async with unit_of_work(db) as uow:  # a write, so the WAL holds frames
            await uow.audit.record("test", "mode.check", "journal", None)
        async with db.engine.connect():  # an open connection keeps -wal and -shm in place
            files = {p.name: _mode(p) for p in data.iterdir()}
    finally:
        await db.dispose()

    assert _mode(data) == 0o700
    assert files == {"ffe.db": 0o600, "ffe.db-wal": 0o600, "ffe.db-shm": 0o600}


async def test_backup_and_restore_when_made_then_0600_files_in_a_0700_folder(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{(tmp_path / 'data' / 'ffe.db').as_posix()}")
    try:
        await migrate.upgrade(db)
        made = await backup(db, tmp_path / "backups")
        restored_into = Database(f"sqlite:///{(tmp_path / 'other' / 'ffe.db').as_posix()}")
        await restore(restored_into, made)
        await restored_into.dispose()
    finally:
        await db.dispose()

    assert _mode(tmp_path / "backups") == 0o700
    assert _mode(made) == 0o600
    assert _mode(manifest_path(made)) == 0o600
    assert _mode(tmp_path / "other") == 0o700
    assert _mode(tmp_path / "other" / "ffe.db") == 0o600
