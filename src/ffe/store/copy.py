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

Each table is then verified: its row count and a checksum computed from values normalized in
Python (instants as UTC ISO text, floats as exact hex, JSON as canonical text), so SQLite and
PostgreSQL give the same checksum for the same rows. The row hashes are added together, which
makes the checksum independent of the order the engines sort text keys in.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    MetaData,
    Row,
    RowMapping,
    Select,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from ffe.domain.errors import ConfigError, StoreError
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import TABLES

#: ``on_progress(table, rows_done, rows_total)``, called as each batch lands.
Progress = Callable[[str, int, int], None]

_MODULUS = 2**256
_KEYS_PER_QUERY = 1000  # well under the bind parameter limits of asyncpg and SQLite


# --- checksums -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    """A table's row count and content checksum."""

    rows: int
    checksum: str


def normal(value: Any) -> Hashable:
    """A value in a form that is the same whichever engine it was read from."""
    if isinstance(value, bool):
        return ("b", value)
    if value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return ("f", (value + 0.0).hex())  # + 0.0: neither engine keeps -0.0 everywhere
    if isinstance(value, datetime):
        return ("t", value.astimezone(UTC).isoformat(timespec="microseconds"))
    if isinstance(value, dict | list):
        return ("j", json.dumps(_unsigned_zeros(value), sort_keys=True, separators=(",", ":")))
    return ("r", repr(value))


def _unsigned_zeros(value: Any) -> Any:
    """The JSON document with -0.0 as 0.0 (PostgreSQL's jsonb numbers have no negative zero)."""
    if isinstance(value, float):
        return value + 0.0
    if isinstance(value, dict):
        return {key: _unsigned_zeros(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unsigned_zeros(item) for item in value]
    return value


def normal_row(row: Row[Any], table: Table) -> tuple[Hashable, ...]:
    """A row read with ``select_rows``, each value normalized; in JSON columns a JSON null
    stays apart from SQL NULL."""
    mapping = row._mapping
    return tuple(
        ("j", "null")
        if mapping[column] is None and _is_json(column) and not mapping[_null_flag(column)]
        else normal(mapping[column])
        for column in table.columns
    )


# --- JSON null and SQL NULL ----------------------------------------------------------------
# Both read back as None. To copy each as it is, rows are read with a flag per JSON column
# saying which it was, and written through a copy of the table whose JSON columns write None as
# SQL NULL and ``JSON.NULL`` as JSON null.

_JSON_NONE_AS_NULL = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


def _null_flag(column: Column[Any]) -> str:
    return f"_ffe_sql_null_{column.name}"


def select_rows(table: Table) -> Select[Any]:
    """Every column of ``table``, plus a flag per JSON column telling SQL NULL from JSON null."""
    flags = [
        column.is_(None).label(_null_flag(column)) for column in table.columns if _is_json(column)
    ]
    return select(table, *flags)


@functools.cache
def _writable(table: Table) -> Table:
    clone = table.to_metadata(MetaData())
    for column in clone.columns:
        if _is_json(column):
            column.type = _JSON_NONE_AS_NULL
    return clone


class Checksum:
    """Accumulates rows into a ``Digest``; the order rows are added in does not matter."""

    def __init__(self) -> None:
        self.rows = 0
        self._total = 0

    def add(self, values: tuple[Hashable, ...]) -> None:
        encoded = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
        self._total = (self._total + int.from_bytes(hashlib.sha256(encoded).digest())) % _MODULUS
        self.rows += 1

    def digest(self) -> Digest:
        return Digest(self.rows, f"{self._total:064x}")


# --- reading -------------------------------------------------------------------------------


def primary_key(table: Table) -> tuple[Column[Any], ...]:
    return tuple(table.primary_key.columns)


def _key(row: Row[Any], key: Sequence[Column[Any]]) -> tuple[Any, ...]:
    mapping = row._mapping
    return tuple(mapping[column] for column in key)


def _after(key: Sequence[Column[Any]], last: tuple[Any, ...]) -> ColumnElement[bool]:
    if len(key) == 1:
        first: ColumnElement[bool] = key[0] > last[0]
        return first
    bound = [literal(value, column.type) for column, value in zip(key, last, strict=True)]
    return tuple_(*key) > tuple_(*bound)


async def pages(
    connection: AsyncConnection, table: Table, batch_size: int
) -> AsyncIterator[Sequence[Row[Any]]]:
    """The table's rows in primary-key order, ``batch_size`` at a time (keyset pagination:
    each page starts after the last key of the one before, so every query is an index scan)."""
    key = primary_key(table)
    query = select_rows(table).order_by(*key).limit(batch_size)
    last: tuple[Any, ...] | None = None
    while True:
        page = await connection.execute(query if last is None else query.where(_after(key, last)))
        rows = page.all()
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        last = _key(rows[-1], key)


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection inside one read transaction: every query sees the database as it was
    when the first one ran, whatever other connections write meanwhile."""
    with db.errors("read"):
        async with db.engine.connect() as connection:
            if db.is_sqlite:
                # pysqlite only opens transactions for writes; a snapshot needs an explicit one.
                await connection.exec_driver_sql("BEGIN")
                try:
                    yield connection
                finally:
                    await connection.rollback()
            else:
                reading = await connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                async with reading.begin():
                    yield reading


async def count_rows(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def digest_tables(
    connection: AsyncConnection, tables: Iterable[Table] = TABLES, batch_size: int = 5000
) -> dict[str, Digest]:
    """Row count and checksum of every table, read through ``connection``."""
    digests = {}
    for table in tables:
        checksum = Checksum()
        async for rows in pages(connection, table, batch_size):
            for row in rows:
                checksum.add(normal_row(row, table))
        digests[table.name] = checksum.digest()
    return digests


async def table_digests(db: Database, batch_size: int = 5000) -> dict[str, Digest]:
    """Row count and checksum of every journal table, from one snapshot of ``db``."""
    async with snapshot(db) as connection:
        return await digest_tables(connection, TABLES, batch_size)


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
            present = await _present(connection, table, [_key(row, key) for row in rows])
            fresh, changed = [], []
            for row in rows:
                there = present.get(tuple(normal(v) for v in _key(row, key)))
                if there is None:
                    fresh.append(_values(row, table))
                elif there != normal_row(row, table):
                    changed.append(row)
            if changed and not overwrite:
                raise StoreError(_conflict(table, changed[0], present))
            if fresh:
                await connection.execute(insert(_writable(table)), fresh)
            if changed:
                replaced = [_update_values(row, table) for row in changed]
                await connection.execute(_update(_writable(table)), replaced)
    return len(fresh), len(rows) - len(fresh) - len(changed), len(changed)


def _values(row: Row[Any], table: Table) -> dict[str, Any]:
    mapping = row._mapping
    return {column.key: _stored(mapping, column) for column in table.columns}


def _stored(mapping: RowMapping, column: Column[Any]) -> Any:
    """The value to write for ``column`` through ``_writable``: as read, except that a JSON
    null is passed as ``JSON.NULL`` (None writes SQL NULL there)."""
    value = mapping[column]
    if value is None and _is_json(column) and not mapping[_null_flag(column)]:
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
            found[tuple(normal(v) for v in _key(row, key))] = normal_row(row, table)
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
    raw = _key(row, key)
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
