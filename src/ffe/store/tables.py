"""Whole tables read the same way on SQLite and PostgreSQL: batches in primary-key order
inside one snapshot, and checksums that agree across the two engines for the same rows.

Used by ``copy`` (to copy and verify) and ``backup`` (to describe what a backup holds).
Values are normalized in Python before hashing (instants as UTC ISO text, floats as exact
hex, JSON as canonical text); the row hashes are added together, so the checksum does not
depend on the order the engines sort text keys in.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import AsyncIterator, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    MetaData,
    Row,
    Select,
    Table,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from ffe.store.database import Database
from ffe.store.models import TABLES

_MODULUS = 2**256

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
        if mapping[column] is None and is_json(column) and not mapping[null_flag(column)]
        else normal(mapping[column])
        for column in table.columns
    )


# --- JSON null and SQL NULL ----------------------------------------------------------------
# Both read back as None. To copy each as it is, rows are read with a flag per JSON column
# saying which it was, and written through a copy of the table whose JSON columns write None as
# SQL NULL and ``JSON.NULL`` as JSON null.

_JSON_NONE_AS_NULL = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


def null_flag(column: Column[Any]) -> str:
    return f"_ffe_sql_null_{column.name}"


def select_rows(table: Table) -> Select[Any]:
    """Every column of ``table``, plus a flag per JSON column telling SQL NULL from JSON null."""
    flags = [
        column.is_(None).label(null_flag(column)) for column in table.columns if is_json(column)
    ]
    return select(table, *flags)


@functools.cache
def writable(table: Table) -> Table:
    clone = table.to_metadata(MetaData())
    for column in clone.columns:
        if is_json(column):
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


def row_key(row: Row[Any], key: Sequence[Column[Any]]) -> tuple[Any, ...]:
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
        last = row_key(rows[-1], key)


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
