"""One journal database: its URL, async engine, sessions and the errors it can raise.

Nothing here connects at import or construction time: ``Database(url)`` builds an engine
that opens its first connection on first use. The composition root (``ffe.bootstrap``)
builds it from settings; tests build it from a URL.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from uuid import uuid4

from sqlalchemy import URL, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from ffe.domain.errors import ConfigError, StoreError
from ffe.store.private import private_file, private_folder

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


@dataclass(frozen=True)
class DatabaseOptions:
    """Connection settings; see ``DatabaseSettings`` in ``ffe.config`` for what each means."""

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = 1800
    pgbouncer: bool = False
    busy_timeout_ms: int = 5000
    # FULL: a committed transaction survives a power cut, not only a killed process.
    sqlite_synchronous: Synchronous = "FULL"


def async_url(url: str | URL) -> URL:
    """``url`` with the async driver ffe uses for its database: aiosqlite or asyncpg.

    Accepts plain ``sqlite:///path`` and ``postgresql://...`` (or ``postgres://``) URLs."""
    if isinstance(url, str):
        url = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", url.strip())
        try:
            url = make_url(url)
        except ArgumentError:
            raise ConfigError(
                f"database URL {mask(url)!r} is not a URL: use sqlite:///PATH/ffe.db or "
                "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
            ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise ConfigError(
                "an in-memory SQLite database keeps nothing: give a file, sqlite:///PATH/ffe.db"
            )
        return url.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    raise ConfigError(
        f"database {backend!r} is not supported: use sqlite:///PATH/ffe.db (the default) "
        "or postgresql://USER:PASSWORD@HOST:5432/DATABASE"
    )


def mask(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"://[^@/]*@", "://***@", url)


class Database:
    """An async engine and session factory for one journal database."""

    def __init__(self, url: str | URL, options: DatabaseOptions | None = None) -> None:
        self.url = async_url(url)
        self.options = options or DatabaseOptions()
        self.engine: AsyncEngine = _build_engine(self.url, self.options)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.url.database) if self.is_sqlite and self.url.database else None

    def __str__(self) -> str:
        return mask(self.url.set(drivername=self.url.get_backend_name()))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dispose()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits at the end of the block, or rolls back on error.

        Database failures come out as ``StoreError`` naming the database."""
        with self.errors("write to"):
            async with self.sessions() as session, session.begin():
                yield session

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn driver and OS errors into a ``StoreError`` that says what to fix."""
        try:
            yield
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(describe_failure(doing, str(self), exc)) from exc

    async def ping(self) -> None:
        """Connect and run a trivial query; raise ``StoreError`` if the database is not there."""
        with self.errors("connect to"):
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def integrity_problems(self) -> list[str]:
        """What the database's own checks find wrong (empty when all is well).

        SQLite: ``PRAGMA integrity_check`` and ``foreign_key_check``. PostgreSQL enforces
        foreign keys and page checksums itself, so only reachability is checked there."""
        if not self.is_sqlite:
            await self.ping()
            return []
        with self.errors("check"):
            async with self.engine.connect() as connection:
                checked = (await connection.exec_driver_sql("PRAGMA integrity_check")).all()
                problems = [str(row[0]) for row in checked if row[0] != "ok"]
                orphans = await connection.exec_driver_sql("PRAGMA foreign_key_check")
                problems += [
                    f"{row[0]} row {row[1]} points to a missing {row[2]}"
                    for row in map(tuple, orphans)
                ]
        return problems


def _build_engine(url: URL, options: DatabaseOptions) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, options)
    # A client-side pool in both cases: behind PgBouncer a new connection still costs a full
    # authentication handshake (SCRAM: ~30 ms), against ~0.1 ms for a query on a kept one.
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": options.pool_size,
        "max_overflow": options.max_overflow,
        "pool_timeout": options.pool_timeout,
        "pool_recycle": options.pool_recycle,
    }
    if options.pgbouncer:
        # In transaction mode a server connection is ours only for one transaction, so the
        # next statement may run on a server connection that never saw our PREPARE. asyncpg
        # caches nothing and SQLAlchemy names every statement uniquely, so a statement is
        # prepared and executed in the same transaction and never reused. asyncpg closes
        # each one when it prepares the next, often in a later transaction on another server
        # connection, where the Close does nothing: PgBouncer must drop the rest
        # (max_prepared_statements from 1.21, else server_reset_query = DEALLOCATE ALL with
        # server_reset_query_always = 1); see docs/operations.md "PgBouncer".
        kwargs["connect_args"] = {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__ffe_{uuid4().hex}__",
        }
    return _create_async_engine(url, **kwargs)


def _sqlite_engine(url: URL, options: DatabaseOptions) -> AsyncEngine:
    engine = _create_async_engine(url, connect_args={"timeout": options.busy_timeout_ms / 1000})
    pragmas = (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA busy_timeout={int(options.busy_timeout_ms)}",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA synchronous={options.sqlite_synchronous}",
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _before_connect(*_: Any) -> None:
        path = Path(url.database or "")
        private_folder(path.parent)
        private_file(path)  # before SQLite makes it (and its -wal, -shm) with the umask's mode

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    return engine


_LOST = "lost the connection to the server: check that it is up, then retry"
_HINTS = (
    (("disk is full", "no space left", "disk full", "diskfull"), "the disk is full: free space"),
    (("database is locked", "database table is locked"), "another process holds the lock"),
    (
        ("connection refused", "could not connect", "connect call failed", "name or service"),
        "is the server running and FFE__DATABASE__URL right?",
    ),
    (
        ("connection is closed", "connection was closed", "terminating connection", "reset by"),
        _LOST,
    ),
    (
        ("unable to open database", "readonly database", "read-only", "not a folder"),
        "check the path and rights",
    ),
    (("sqlstate 3d000",), "create the database, or fix FFE__DATABASE__URL"),
    (("no such table", "does not exist", "undefinedtable"), "run `ffe db upgrade`"),
    (("unique constraint", "duplicate key"), "that row is already recorded"),
)


def describe_failure(doing: str, where: str, exc: BaseException) -> str:
    """One line: what failed, where, the driver's reason and, when known, what to do."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    sqlstate = getattr(cause, "sqlstate", None)  # PostgreSQL's error code, e.g. 3D000
    lowered = f"{type(cause).__name__} sqlstate {sqlstate} {reason}".lower()
    hint = next((h for keys, h in _HINTS if any(k in lowered for k in keys)), None)
    if hint is None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        hint = _LOST  # the driver's words vary with the moment the connection went
    message = f"could not {doing} the database {where}: {reason}"
    return f"{message} ({hint})" if hint else message
