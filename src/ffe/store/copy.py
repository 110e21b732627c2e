"""Copy a whole journal from one database to another, and prove the copy is faithful.

    report = await copy_database(Database("sqlite:///ffe.db"), Database("postgresql://..."))

Tables go over in ``TABLES`` order (every foreign key points at a table already copied), in
batches read by keyset pagination on the primary key, so no table is ever held in memory. The
source is read inside one snapshot (a read transaction), so a journal that is being written
while it is copied still arrives consistent. Primary keys are kept as they are, and so is the
difference between SQL NULL and a JSON null in JSON columns.

A copy can be run again: rows whose key is already in the target are skipped when they are
equal, and a row that differs is a conflict (``StoreError`` naming the table and the key)
unless ``overwrite`` is given. After a copy into PostgreSQL every id sequence is moved past the
largest id, so rows inserted afterwards get fresh ids.

Each table is then verified by its row count and a checksum that SQLite and PostgreSQL
compute alike for the same rows (see ``ffe.store.tables``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Row,
    RowMapping,
    Table,
    bindparam,
    insert,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ffe.domain.errors import ConfigError, StoreError
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import TABLES
from ffe.store.tables import (
    Checksum,
    Digest,
    count_rows,
    is_json,
    normal,
    normal_row,
    null_flag,
    pages,
    primary_key,
    row_key,
    select_rows,
    snapshot,
    table_digests,
    writable,
)

#: ``on_progress(table, rows_done, rows_total)``, called as each batch lands.
Progress = Callable[[str, int, int], None]

_KEYS_PER_QUERY = 1000  # well under the bind parameter limits of asyncpg and SQLite


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableReport:
    """What a copy did to one table and what verification found."""

    table: str
    copied: int
    skipped: int
    overwritten: int
    source: Digest
    target: Digest

    @property
    def ok(self) -> bool:
        return self.source == self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "copied": self.copied,
            "skipped": self.skipped,
            "overwritten": self.overwritten,
            "rows": self.target.rows,
            "source_rows": self.source.rows,
            "checksum": self.target.checksum,
            "source_checksum": self.source.checksum,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    revision: str
    tables: tuple[TableReport, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables)

    @property
    def failed(self) -> list[str]:
        return [table.table for table in self.tables if not table.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "revision": self.revision,
            "ok": self.ok,
            "tables": [table.as_dict() for table in self.tables],
        }


class VerificationError(StoreError):
    """The target does not hold the same rows as the source; ``report`` says where."""

    def __init__(self, report: CopyReport) -> None:
        self.report = report
        failures = ", ".join(
            f"{t.table} ({t.source.rows} rows in the source, {t.target.rows} in the target"
            f"{', checksums differ' if t.source.rows == t.target.rows else ''})"
            for t in report.tables
            if not t.ok
        )
        super().__init__(f"{report.target} does not match {report.source}: {failures}")


# --- copying -------------------------------------------------------------------------------


@dataclass
class _Counts:
    copied: int = 0
    skipped: int = 0
    overwritten: int = 0


async def copy_database(
    source: Database,
    target: Database,
    *,
    batch_size: int = 5000,
    overwrite: bool = False,
    on_progress: Progress | None = None,
) -> CopyReport:
    """Copy every journal table from ``source`` into ``target`` and verify the result.

    An empty target is migrated first; otherwise both must be at the schema revision this ffe
    expects. Raises ``StoreError`` on a conflict or a revision mismatch, and
    ``VerificationError`` (a ``StoreError`` carrying the report) when verification fails."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    if same_database(source, target):
        raise StoreError(f"source and target are the same database ({source}): nothing to copy")
    revision = await prepare_target(source, target)
    counts: dict[str, _Counts] = {}
    sources: dict[str, Digest] = {}
    async with snapshot(source) as reading:
        for table in TABLES:
            counts[table.name], sources[table.name] = await _copy_table(
                reading, target, table, batch_size, overwrite, on_progress
            )
    await reset_sequences(target)
    targets = await table_digests(target, batch_size)
    report = CopyReport(
        source=str(source),
        target=str(target),
        revision=revision,
        tables=tuple(
            TableReport(
                table=name,
                copied=counts[name].copied,
                skipped=counts[name].skipped,
                overwritten=counts[name].overwritten,
                source=sources[name],
                target=targets[name],
            )
            for name in sources
        ),
    )
    if not report.ok:
        raise VerificationError(report)
    return report


async def verify_copy(source: Database, target: Database, batch_size: int = 5000) -> CopyReport:
    """Compare every table of two databases (counts and checksums) without copying anything;
    raise ``VerificationError`` when they differ."""
    revision = await migrate.current(source)
    sources = await table_digests(source, batch_size)
    targets = await table_digests(target, batch_size)
    report = CopyReport(
        source=str(source),
        target=str(target),
        revision=revision or "none",
        tables=tuple(TableReport(name, 0, 0, 0, sources[name], targets[name]) for name in sources),
    )
    if not report.ok:
        raise VerificationError(report)
    return report


def same_database(a: Database, b: Database) -> bool:
    if a.is_sqlite != b.is_sqlite:
        return False
    if a.sqlite_path is not None and b.sqlite_path is not None:
        return a.sqlite_path.resolve() == b.sqlite_path.resolve()
    where = (a.url.host, a.url.port or 5432, a.url.database)
    return where == (b.url.host, b.url.port or 5432, b.url.database)


async def prepare_target(source: Database, target: Database) -> str:
    """Check both schemas are at this ffe's head revision, migrating an empty target first;
    return that revision."""
    wanted = migrate.head()
    known = {revision.id for revision in await migrate.history()}
    at_source = await migrate.current(source)
    if at_source is None:
        raise StoreError(
            f"the source {source} has no schema revision: it is empty or not an ffe journal"
        )
    if at_source != wanted:
        raise StoreError(_behind_or_ahead("source", source, at_source, wanted, known))
    at_target = await migrate.current(target)
    if at_target is None:
        await migrate.upgrade(target)
        return wanted
    if at_target != wanted:
        raise StoreError(_behind_or_ahead("target", target, at_target, wanted, known))
    return wanted


def _behind_or_ahead(role: str, db: Database, at: str, wanted: str, known: set[str]) -> str:
    where = f"the {role} {db} is at revision {at}, this ffe copies revision {wanted}"
    if at not in known:
        return f"{where} ({at} is newer than this ffe knows: upgrade ffe)"
    return f"{where}: run `ffe db upgrade --url ...` on the {role} first"


async def _copy_table(
    reading: AsyncConnection,
    target: Database,
    table: Table,
    batch_size: int,
    overwrite: bool,
    on_progress: Progress | None,
) -> tuple[_Counts, Digest]:
    total = await count_rows(reading, table)
    counts, checksum = _Counts(), Checksum()
    if on_progress is not None:
        on_progress(table.name, 0, total)
    async for rows in pages(reading, table, batch_size):
        for row in rows:
            checksum.add(normal_row(row, table))
        copied, skipped, overwritten = await _write_batch(target, table, rows, overwrite)
        counts.copied += copied
        counts.skipped += skipped
        counts.overwritten += overwritten
        if on_progress is not None:
            on_progress(table.name, checksum.rows, max(total, checksum.rows))
    return counts, checksum.digest()


async def _write_batch(
    target: Database, table: Table, rows: Sequence[Row[Any]], overwrite: bool
) -> tuple[int, int, int]:
    """Insert the rows the target lacks; compare (or, with ``overwrite``, replace) the others.
    Returns (inserted, skipped as equal, overwritten)."""
    key = primary_key(table)
    with target.errors("write to"):
        async with target.engine.begin() as connection:
            present = await _present(connection, table, [row_key(row, key) for row in rows])
            fresh, changed = [], []
            for row in rows:
                there = present.get(tuple(normal(v) for v in row_key(row, key)))
                if there is None:
                    fresh.append(_values(row, table))
                elif there != normal_row(row, table):
                    changed.append(row)
            if changed and not overwrite:
                raise StoreError(_conflict(table, changed[0], present))
            if fresh:
                await connection.execute(insert(writable(table)), fresh)
            if changed:
                replaced = [_update_values(row, table) for row in changed]
                await connection.execute(_update(writable(table)), replaced)
    return len(fresh), len(rows) - len(fresh) - len(changed), len(changed)


def _values(row: Row[Any], table: Table) -> dict[str, Any]:
    mapping = row._mapping
    return {column.key: _stored(mapping, column) for column in table.columns}


def _stored(mapping: RowMapping, column: Column[Any]) -> Any:
    """The value to write for ``column`` through ``writable``: as read, except that a JSON
    null is passed as ``JSON.NULL`` (None writes SQL NULL there)."""
    value = mapping[column]
    if value is None and is_json(column) and not mapping[null_flag(column)]:
        return JSON.NULL
    return value


async def _present(
    connection: AsyncConnection, table: Table, keys: Sequence[tuple[Any, ...]]
) -> dict[tuple[Hashable, ...], tuple[Hashable, ...]]:
    """The target's rows (normalized) among ``keys``, by normalized key."""
    key = primary_key(table)
    found: dict[tuple[Hashable, ...], tuple[Hashable, ...]] = {}
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        where = key[0].in_([k[0] for k in chunk]) if len(key) == 1 else tuple_(*key).in_(chunk)
        for row in await connection.execute(select_rows(table).where(where)):
            found[tuple(normal(v) for v in row_key(row, key))] = normal_row(row, table)
    return found


def _update(table: Table) -> Any:
    key = primary_key(table)
    conditions = [column == bindparam(f"k_{column.key}", type_=column.type) for column in key]
    values = {
        column.key: bindparam(f"v_{column.key}", type_=column.type)
        for column in table.columns
        if not column.primary_key
    }
    return update(table).where(*conditions).values(values)


def _update_values(row: Row[Any], table: Table) -> dict[str, Any]:
    mapping = row._mapping
    return {
        f"{'k' if column.primary_key else 'v'}_{column.key}": _stored(mapping, column)
        for column in table.columns
    }


def _conflict(
    table: Table, row: Row[Any], present: dict[tuple[Hashable, ...], tuple[Hashable, ...]]
) -> str:
    key = primary_key(table)
    raw = row_key(row, key)
    theirs = present[tuple(normal(v) for v in raw)]
    ours = normal_row(row, table)
    differing = next(
        column.name
        for column, mine, other in zip(table.columns, ours, theirs, strict=True)
        if mine != other
    )
    where = ", ".join(f"{c.name}={v!r}" for c, v in zip(key, raw, strict=True))
    mapping = row._mapping
    return (
        f"table {table.name}, row {where}: the target already holds this key with a different "
        f"{differing} (the source has {_short(mapping[differing])}); copy again with overwrite "
        "(`ffe db copy --overwrite`) to replace the target's rows"
    )


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


async def reset_sequences(db: Database) -> None:
    """Move every id sequence of a PostgreSQL journal past the largest id in its table, so
    the next insert does not collide with a copied row. Nothing to do on SQLite, which takes
    the next id from the largest one in the table."""
    if db.is_sqlite:
        return
    with db.errors("write to"):
        async with db.engine.begin() as connection:
            quote = connection.dialect.identifier_preparer.quote
            for table in TABLES:
                column = table.autoincrement_column
                if column is None:
                    continue
                await connection.execute(
                    text(
                        "SELECT setval(pg_get_serial_sequence(:table, :column), "
                        f"COALESCE((SELECT MAX({quote(column.name)}) FROM {quote(table.name)}), 0)"
                        " + 1, false)"
                    ),
                    {"table": quote(table.name), "column": column.name},
                )
