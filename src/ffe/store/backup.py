"""Backups of the journal, and restores that prove they brought everything back.

``backup(db, directory)`` writes ``<name>-<UTC time>.db`` (SQLite, through the online backup
API, safe while other processes write) or ``<name>-<UTC time>.dump`` (PostgreSQL, through
``pg_dump --format=custom``), and beside it a manifest ``<backup>.json``: the schema revision,
the file's size and SHA-256, and every table's row count and checksum (see ``ffe.store.tables``).
Files appear under their final name only once complete. Only the newest ``keep`` backups of
that database are kept in the directory.

``restore(db, path)`` checks the backup against its manifest before it touches anything, then
replaces the database (SQLite: a verified copy is moved over the file in one rename;
PostgreSQL: ``pg_restore`` in a single transaction), verifies the result against the manifest
and records the restore in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, literal, select, text
from sqlalchemy import table as table_named

from ffe.domain.errors import ConfigError, StoreError
from ffe.store import migrate
from ffe.store.database import Database, describe_failure
from ffe.store.manifest import (
    Manifest,
    fsync_directory,
    fsync_file,
    manifest_path,
    read_manifest,
    sha256_of,
    write_atomically,
)
from ffe.store.models import TABLES
from ffe.store.pg_tools import client_tool, run_client_tool
from ffe.store.private import private_file, private_folder
from ffe.store.repositories import unit_of_work
from ffe.store.tables import Digest, digest_tables, snapshot, table_digests

#: ``<name>-20261122T120000Z.db``; ``-2``, ``-3``... when two are made within one second.
BACKUP_NAME = re.compile(
    r"^(?P<stem>.+)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.(?P<ext>db|dump)$"
)


@dataclass(frozen=True)
class RestoreReport:
    backup: str
    database: str
    revision: str
    head: str
    rows: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup_stem(db: Database) -> str:
    """The name backups of ``db`` start with: the SQLite file's stem or the database's name."""
    name = db.sqlite_path.stem if db.sqlite_path is not None else db.url.database or "postgres"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "ffe"


def _extension(db: Database) -> str:
    return "db" if db.is_sqlite else "dump"


def list_backups(directory: Path, stem: str, extension: str) -> list[Path]:
    """The backups of one database in ``directory``, oldest first (by the time in the name)."""
    if not directory.is_dir():
        return []
    found: list[tuple[str, int, Path]] = []
    for path in directory.iterdir():
        match = BACKUP_NAME.match(path.name)
        if match and match["stem"] == stem and match["ext"] == extension and path.is_file():
            found.append((match["stamp"], int(match["n"] or 1), path))
    return [path for _, _, path in sorted(found)]


def prune(directory: Path, stem: str, extension: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups (and their manifests); return the deleted."""
    doomed = list_backups(directory, stem, extension)[:-keep]
    for path in doomed:
        path.unlink(missing_ok=True)
        manifest_path(path).unlink(missing_ok=True)
    return doomed


# --- backing up ----------------------------------------------------------------------------


async def backup(db: Database, directory: Path | str, keep: int = 7) -> Path:
    """Back ``db`` up into ``directory``; keep its newest ``keep`` backups there. Returns the
    new backup's path (its manifest is the same path plus ``.json``)."""
    if keep < 1:
        raise ConfigError(f"keep must be at least 1, not {keep}")
    directory = Path(directory)
    with _file_errors("write a backup into", str(directory)):
        private_folder(directory)
    stem, extension = backup_stem(db), _extension(db)
    final = _free_name(directory, stem, extension)
    partial = directory / f".{final.name}.partial"
    try:
        with _file_errors("write a backup into", str(directory)):
            private_file(partial)  # SQLite and pg_dump write into it and keep its mode
        if db.is_sqlite:
            revision, digests = await _backup_sqlite(db, partial)
        else:
            revision, digests = await _backup_postgres(db, partial)
        with _file_errors("write a backup into", str(directory)):
            manifest = Manifest(
                engine="sqlite" if db.is_sqlite else "postgresql",
                revision=revision,
                created_at=_now().isoformat(timespec="seconds"),
                database=str(db),
                size=partial.stat().st_size,
                sha256=await asyncio.to_thread(sha256_of, partial),
                tables=digests,
            )
            # The manifest lands first: a backup under its final name always has one.
            write_atomically(manifest_path(final), json.dumps(manifest.as_dict(), indent=2))
            fsync_file(partial)
            os.replace(partial, final)
            fsync_directory(directory)
    finally:
        for leftover in _with_sidecars(partial):
            leftover.unlink(missing_ok=True)
    prune(directory, stem, extension, keep)
    return final


def _free_name(directory: Path, stem: str, extension: str) -> Path:
    """A new name that sorts after every backup already made within the same second."""
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    taken = [
        int(match["n"] or 1)
        for path in directory.iterdir()
        if (match := BACKUP_NAME.match(path.name))
        and match["stem"] == stem
        and match["stamp"] == stamp
    ]
    n = max(taken, default=0) + 1
    return directory / f"{stem}-{stamp}{'' if n == 1 else f'-{n}'}.{extension}"


def _now() -> datetime:
    return datetime.now(UTC)


async def _backup_sqlite(db: Database, partial: Path) -> tuple[str, dict[str, Digest]]:
    source = db.sqlite_path
    if source is None or not source.is_file():
        raise StoreError(f"there is no database file at {source}: nothing to back up")
    timeout = db.options.busy_timeout_ms / 1000
    await asyncio.to_thread(_sqlite_copy, source, partial, timeout)
    await asyncio.to_thread(_check_sqlite_file, partial, f"the backup of {db}")
    revision, digests = await _describe_sqlite(partial)
    await asyncio.to_thread(_one_file, partial)
    return revision, digests


def _sqlite_copy(source: Path, destination: Path, timeout: float = 5.0, mode: str = "rw") -> None:
    """Copy a SQLite database with its online backup API: one step, inside one read
    transaction, so writers in other processes carry on and the copy is a consistent snapshot
    (committed WAL frames included)."""
    with (
        _file_errors("copy", str(source)),
        contextlib.closing(_connect(source, mode, timeout)) as reading,
        contextlib.closing(sqlite3.connect(destination)) as writing,
    ):
        reading.backup(writing)


def _connect(path: Path, mode: str, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to an existing file (never creates one): ``rw``, ``ro``, or ``frozen`` for
    a file nothing writes to (read-only, without locks or a -shm file)."""
    query = "mode=ro&immutable=1" if mode == "frozen" else f"mode={mode}"
    return sqlite3.connect(f"{path.absolute().as_uri()}?{query}", uri=True, timeout=timeout)


def _check_sqlite_file(path: Path, what: str) -> str | None:
    """Run SQLite's integrity check on ``path``; return its schema revision."""
    try:
        with contextlib.closing(_connect(path, "frozen")) as connection:
            found = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            if "alembic_version" not in tables:
                return None
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{what} is not a readable SQLite database ({exc})") from exc
    if found != ["ok"]:
        raise StoreError(f"{what} fails SQLite's integrity check: {'; '.join(found[:3])}")
    return None if row is None else str(row[0])


async def _describe_sqlite(path: Path) -> tuple[str, dict[str, Digest]]:
    async with Database(f"sqlite:///{path.absolute().as_posix()}") as copy:
        revision = _require_head(await migrate.current(copy))
        return revision, await table_digests(copy)


def _require_head(at: str | None) -> str:
    """``at`` when it is the head revision (the checksums read the tables as this ffe's
    models describe them)."""
    wanted = migrate.head()
    if at is None or at != wanted:
        raise StoreError(
            f"the database is at schema revision {at or 'none (not migrated)'}, this ffe backs up "
            f"revision {wanted}: run `ffe db upgrade` first (or back up with the matching ffe)"
        )
    return at


def _one_file(path: Path) -> None:
    """Leave the copy in rollback-journal mode: one self-contained file, no -wal beside it."""
    with _file_errors("finish", str(path)), contextlib.closing(_connect(path, "rw")) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")


async def _backup_postgres(db: Database, partial: Path) -> tuple[str, dict[str, Digest]]:
    pg_dump = client_tool("pg_dump", "back up")
    async with snapshot(db) as reading:
        revision = _require_head(await reading.run_sync(_revision_of))
        # pg_dump reads the very snapshot the checksums are computed from.
        exported = (await reading.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        await run_client_tool(
            [pg_dump, "--format=custom", f"--snapshot={exported}", f"--file={partial}"],
            db,
        )
        digests = await digest_tables(reading)
    return revision, digests


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


# --- restoring -----------------------------------------------------------------------------


async def restore(
    db: Database, backup_file: Path | str, *, force: bool = False, actor: str = "ffe"
) -> RestoreReport:
    """Replace ``db`` with the backup at ``backup_file``, after checking the backup against
    its manifest; verify the result and record it in the audit log. A database that holds
    rows is only replaced with ``force``. A backup that fails a check changes nothing."""
    backup_file = Path(backup_file)
    manifest = await read_manifest(backup_file)
    engine = "sqlite" if db.is_sqlite else "postgresql"
    if manifest.engine != engine:
        raise StoreError(
            f"{backup_file.name} is a {manifest.engine} backup and {db} is {engine}: restore it "
            f"into a {manifest.engine} database, then move it over with `ffe db copy`"
        )
    if not force and await _holds_rows(db):
        raise StoreError(
            f"{db} already holds a journal: restoring replaces it; give --force to do that "
            "(make a backup of it first with `ffe backup`)"
        )
    if db.is_sqlite:
        await _restore_sqlite(db, backup_file, manifest)
    else:
        await _restore_postgres(db, backup_file)
    rows = await verify_restored(db, manifest, backup_file.name)
    async with unit_of_work(db) as uow:
        await uow.audit.record(
            actor,
            "db.restore",
            backup_file.name,
            {
                "sha256": manifest.sha256,
                "revision": manifest.revision,
                "forced": force,
                "rows": rows,
            },
        )
    return RestoreReport(backup_file.name, str(db), manifest.revision, migrate.head(), rows)


async def _holds_rows(db: Database) -> bool:
    if db.sqlite_path is not None and (
        not db.sqlite_path.is_file() or db.sqlite_path.stat().st_size == 0
    ):
        return False
    with db.errors("read"):
        async with db.engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            for table in TABLES:
                if table.name in names:
                    query = select(literal(1)).select_from(table).limit(1)
                    if (await connection.execute(query)).first() is not None:
                        return True
    return False


async def _restore_sqlite(db: Database, backup_file: Path, manifest: Manifest) -> None:
    target = db.sqlite_path
    if target is None:  # pragma: no cover - is_sqlite implies a path
        raise StoreError(f"{db} has no file to restore into")
    with _file_errors("restore into", str(target)):
        private_folder(target.parent)
    revision = await asyncio.to_thread(_check_sqlite_file, backup_file, backup_file.name)
    if revision != manifest.revision:
        raise StoreError(
            f"{backup_file.name} holds schema revision {revision}, its manifest says "
            f"{manifest.revision}: nothing was restored"
        )
    staging = target.with_name(f".{target.name}.restore-{uuid4().hex[:8]}")
    try:
        with _file_errors("restore into", str(target)):
            private_file(staging)
        await asyncio.to_thread(_sqlite_copy, backup_file, staging, 5.0, "frozen")
        await db.dispose()  # no connection of ours may keep the old file open
        await asyncio.to_thread(_take_place_of, staging, target)
    finally:
        for leftover in _with_sidecars(staging):
            leftover.unlink(missing_ok=True)


def _take_place_of(staging: Path, target: Path) -> None:
    """Move ``staging`` over ``target`` in one rename, dropping the old file's WAL first (left
    beside the new file, its frames would be replayed into it)."""
    if target.is_file():
        _release(target)
    with _file_errors("restore into", str(target)):
        for sidecar in _with_sidecars(target)[1:]:
            sidecar.unlink(missing_ok=True)
        fsync_file(staging)
        os.replace(staging, target)
        fsync_directory(target.parent)


def _release(target: Path) -> None:
    """Checkpoint the old database out of WAL mode; that needs every other connection to it
    closed, so it doubles as the check that no ffe process is using it."""
    try:
        with contextlib.closing(_connect(target, "rw", timeout=1.0)) as connection:
            connection.execute("PRAGMA journal_mode=DELETE").fetchall()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(
                f"{target} is in use by another process: stop every ffe process using it "
                "(agents, API, dashboards), then restore again"
            ) from exc
        raise StoreError(describe_failure("restore into", str(target), exc)) from exc
    except sqlite3.DatabaseError:
        pass  # the old file is damaged, which is why it is being replaced


async def _restore_postgres(db: Database, backup_file: Path) -> None:
    pg_restore = client_tool("pg_restore", "restore")
    # The table of contents must read back before anything is dropped.
    await run_client_tool([pg_restore, "--list", str(backup_file)], None)
    await db.dispose()
    await run_client_tool(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",  # all or nothing: a failure leaves the database as it was
            "--exit-on-error",
            str(backup_file),
        ],
        db,
    )


async def verify_restored(db: Database, manifest: Manifest, name: str) -> dict[str, int]:
    """Check ``db`` against the manifest: integrity, schema revision, and each table's rows
    (count and checksum; the count only for a backup of an older schema). Returns the counts."""
    problems = await db.integrity_problems()
    if problems:
        raise StoreError(f"after restoring {name}, {db} fails its integrity check: {problems[0]}")
    at = await migrate.current(db)
    if at != manifest.revision:
        raise StoreError(
            f"after restoring {name}, {db} is at revision {at}, not {manifest.revision}"
        )
    if at == migrate.head():
        found = await table_digests(db)
    else:
        counts = await _counts(db, manifest)
        found = {table: Digest(rows, "") for table, rows in counts.items()}
    for table, expected in manifest.tables.items():
        got = found.get(table, Digest(0, ""))
        if got.rows != expected.rows or (got.checksum and got.checksum != expected.checksum):
            raise StoreError(
                f"after restoring {name}, table {table} of {db} holds {got.rows} rows"
                f"{' with a different checksum' if got.rows == expected.rows else ''}; "
                f"the backup's manifest says {expected.rows}"
            )
    return {table: digest.rows for table, digest in found.items()}


async def _counts(db: Database, manifest: Manifest) -> dict[str, int]:
    counts = {}
    with db.errors("read"):
        async with db.engine.connect() as connection:
            for name in manifest.tables:
                query = select(text("count(*)")).select_from(table_named(name))
                counts[name] = int((await connection.execute(query)).scalar_one())
    return counts


# --- helpers -------------------------------------------------------------------------------


def _with_sidecars(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))]


@contextlib.contextmanager
def _file_errors(doing: str, where: str) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(describe_failure(doing, where, exc)) from exc
