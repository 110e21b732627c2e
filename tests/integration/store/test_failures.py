"""Writes that fail because the database is gone or full: a ``StoreError`` that says what to
fix, nothing of the failed transaction kept, everything before it intact, and writes working
again, through the same ``Database``, once the cause is removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, make_url, text

from ffe.domain.errors import StoreError
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.repositories import unit_of_work

T0 = datetime(2024, 1, 2, tzinfo=UTC)
BATCH_ROWS = 50
ADMIN_URL = os.environ.get("FFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
only_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def batch(number: int, rows: int = BATCH_ROWS) -> list[dict[str, Any]]:
    return [
        {
            "time": T0 + timedelta(minutes=number),
            "symbol": f"S{i:04d}",
            "target": 0.5,
            "rationale": f"batch {number} row {i}: " + "why " * 20,
            "inputs_fingerprint": str(number),
        }
        for i in range(rows)
    ]


async def new_run(db: Database) -> str:
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="paper", strategy="failures", code_version="t")
        return run.id


async def write(db: Database, run_id: str, number: int, rows: int = BATCH_ROWS) -> None:
    async with unit_of_work(db) as uow:
        await uow.journal.add_decisions(run_id, batch(number, rows))


async def batches(db: Database, run_id: str) -> dict[str, int]:
    """Rows per batch number in the journal."""
    async with unit_of_work(db) as uow:
        decisions = await uow.journal.last_decisions(run_id, limit=1_000_000)
    return dict(Counter(decision.inputs_fingerprint or "?" for decision in decisions))


async def assert_consistent(db: Database, run_id: str, numbers: range) -> None:
    assert await batches(db, run_id) == {str(n): BATCH_ROWS for n in numbers}
    assert await db.integrity_problems() == []


# --- SQLite ---------------------------------------------------------------------------------


@contextlib.contextmanager
def page_cap(db: Database) -> Iterator[dict[str, int | None]]:
    """``cap["pages"] = N`` makes every new connection stop the file at N pages
    (``PRAGMA max_page_count``), so a write that needs more fails as on a full disk
    (SQLITE_FULL); None lifts it."""
    cap: dict[str, int | None] = {"pages": None}

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if cap["pages"] is not None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {cap['pages']}")
            cursor.close()

    event.listen(db.engine.sync_engine, "connect", on_connect)
    try:
        yield cap
    finally:
        event.remove(db.engine.sync_engine, "connect", on_connect)


async def page_count(db: Database) -> int:
    async with db.engine.connect() as connection:
        return int((await connection.exec_driver_sql("PRAGMA page_count")).scalar_one())


async def test_sqlite_write_when_disk_full_then_says_free_space_and_journal_intact(tmp_path):
    db = Database(f"sqlite:///{(tmp_path / 'journal.db').as_posix()}")
    await migrate.upgrade(db)
    run_id = await new_run(db)
    for number in (1, 2, 3):
        await write(db, run_id, number)

    with page_cap(db) as cap:
        cap["pages"] = await page_count(db)
        await db.dispose()  # connections opened from here on are capped
        with pytest.raises(StoreError, match=r"disk is full: free space") as failure:
            await write(db, run_id, 4, rows=2000)
        cap["pages"] = None
        await db.dispose()

    assert "journal.db" in str(failure.value)
    await assert_consistent(db, run_id, range(1, 4))
    await write(db, run_id, 4)
    await assert_consistent(db, run_id, range(1, 5))
    await db.dispose()


async def test_sqlite_write_when_journal_folder_gone_then_says_check_path_and_resumes(tmp_path):
    folder = tmp_path / "journal"
    db = Database(f"sqlite:///{(folder / 'journal.db').as_posix()}")
    await migrate.upgrade(db)
    run_id = await new_run(db)
    for number in (1, 2, 3):
        await write(db, run_id, number)
    await db.dispose()

    # The folder goes (an unmounted volume, say) and a plain file takes its name: a path
    # SQLite cannot open, whoever runs the test (root ignores permissions, not file types).
    folder.rename(tmp_path / "elsewhere")
    folder.write_text("not a folder")
    with pytest.raises(StoreError, match=r"check the path and rights") as failure:
        await write(db, run_id, 4)
    assert str(folder) in str(failure.value)

    folder.unlink()
    (tmp_path / "elsewhere").rename(folder)
    await assert_consistent(db, run_id, range(1, 4))
    await write(db, run_id, 4)
    await assert_consistent(db, run_id, range(1, 5))
    await db.dispose()


# --- PostgreSQL -----------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def relay(listener: socket.socket, to: tuple[str, int]) -> AsyncIterator[None]:
    """Forward TCP connections accepted on ``listener`` to ``to``: the server "comes back"."""

    open_streams: list[asyncio.StreamWriter] = []

    async def forward(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(*to)
        open_streams.extend((client_out, server_out))
        await asyncio.gather(_pipe(client_in, server_out), _pipe(server_in, client_out))

    server = await asyncio.start_server(forward, sock=listener)
    try:
        yield
    finally:
        server.close()
        for stream in open_streams:
            stream.close()
        await server.wait_closed()


@only_postgres
async def test_postgres_write_when_nothing_listens_then_says_is_server_running_and_resumes(
    db: Database, database_url: str
):
    run_id = await new_run(db)
    await write(db, run_id, 1)
    # A bound socket that does not listen: connecting to its port is refused.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    url = make_url(database_url)
    away = Database(url.set(host="127.0.0.1", port=port))
    try:
        with pytest.raises(StoreError, match=r"is the server running") as failure:
            await write(away, run_id, 2)
        assert f":{port}/" in str(failure.value)

        async with relay(listener, (url.host or "127.0.0.1", url.port or 5432)):
            await write(away, run_id, 2)
            await assert_consistent(away, run_id, range(1, 3))
    finally:
        await away.dispose()
        listener.close()


async def write_and_lose_connection(db: Database, run_id: str, number: int) -> None:
    """Write a batch, then have the server end this session before the commit."""
    async with unit_of_work(db) as uow:
        await uow.journal.add_decisions(run_id, batch(number))
        pid = (await uow.session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with db.engine.connect() as other:
            killed = text("SELECT pg_terminate_backend(:pid)")
            assert (await other.execute(killed, {"pid": pid})).scalar_one()


@only_postgres
async def test_postgres_write_when_connection_killed_mid_transaction_then_batch_not_kept(
    db: Database,
):
    run_id = await new_run(db)
    for number in (1, 2, 3):
        await write(db, run_id, number)

    with pytest.raises(StoreError, match=r"lost the connection") as failure:
        await write_and_lose_connection(db, run_id, 4)
    assert "could not write to the database" in str(failure.value)

    await assert_consistent(db, run_id, range(1, 4))
    await write(db, run_id, 4)  # a fresh connection from the same pool
    await assert_consistent(db, run_id, range(1, 5))


async def _admin(sql: str) -> None:
    plain = make_url(ADMIN_URL).set(drivername="postgresql")
    connection = await asyncpg.connect(plain.render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@only_postgres
async def test_postgres_write_when_database_dropped_then_says_create_it_and_resumes(
    db: Database,
):
    run_id = await new_run(db)
    await write(db, run_id, 1)
    name = db.url.database
    await _admin(f'DROP DATABASE "{name}" WITH (FORCE)')

    with pytest.raises(StoreError, match=r"create the database") as failure:
        await write(db, run_id, 2)
    assert f'"{name}" does not exist' in str(failure.value)

    await _admin(f'CREATE DATABASE "{name}"')
    await migrate.upgrade(db)
    run_id = await new_run(db)
    await write(db, run_id, 1)
    await assert_consistent(db, run_id, range(1, 2))
