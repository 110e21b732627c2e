"""Shared fixtures. Kept small on purpose: most tests build what they need inline."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pytest

from ffe.domain import MarketData

if TYPE_CHECKING:
    from ffe.store.database import Database

MarketFactory = Callable[..., MarketData]


def _make_market(
    close: Sequence[float] | np.ndarray,
    *,
    open_: Sequence[float] | np.ndarray | None = None,
    symbols: Sequence[str] | None = None,
    start: str = "2020-01-01",
) -> MarketData:
    """Daily bars from closes; opens default to the previous close (first: the close)."""
    closes = np.asarray(close, dtype=float)
    if closes.ndim == 1:
        closes = closes[:, None]
    if open_ is None:
        opens = np.vstack([closes[:1], closes[:-1]])
    else:
        opens = np.asarray(open_, dtype=float).reshape(closes.shape)
    highs = np.fmax(opens, closes) * 1.01
    lows = np.fmin(opens, closes) * 0.99
    n_bars, n_symbols = closes.shape
    names = tuple(symbols or [f"S{i}" for i in range(n_symbols)])
    times = np.datetime64(start, "ns") + np.arange(n_bars) * np.timedelta64(1, "D")
    return MarketData(names, times, opens, highs, lows, closes, np.ones(closes.shape))


@pytest.fixture
def make_market() -> MarketFactory:
    return _make_market


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Whatever a test leaves changed in os.environ is undone after it: a test that once set
    FFE__API__ANALYSIS_SYMBOLS=[] for itself emptied the pre-compute of every stack the
    later tests of its process started."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own data directory (and so its own SQLite journal), so no test
    writes to the user's real one. Tests that care set FFE__DATA__DIR themselves."""
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("FFE__DATABASE__URL", raising=False)


# --- databases: every store test runs on SQLite and on PostgreSQL -------------------------

POSTGRES_URL = os.environ.get("FFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(_plain(POSTGRES_URL), timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure to connect is the reason to report
        return f"PostgreSQL at {POSTGRES_URL} is not reachable ({type(exc).__name__}: {exc})"
    return None


def _plain(url: str) -> str:
    """asyncpg takes postgresql:// URLs without a SQLAlchemy driver suffix."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def require_postgres() -> None:
    """Skip without PostgreSQL on a developer machine; fail under CI=true, where it must be."""
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem}; CI=true requires it (set FFE_TEST_POSTGRES_URL)")
    pytest.skip(f"{problem}; set FFE_TEST_POSTGRES_URL or start PostgreSQL to run this")


def _admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(_plain(POSTGRES_URL), timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    require_postgres()
    name = f"ffe_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def new_postgres_database() -> Iterator[Callable[[], str]]:
    """Call it for the URL of a new, empty PostgreSQL database; all are dropped afterwards.
    Usable inside async tests (the admin connection runs on a thread of its own)."""
    from concurrent.futures import ThreadPoolExecutor

    with contextlib.ExitStack() as stack, ThreadPoolExecutor(1) as admin:
        yield lambda: admin.submit(stack.enter_context, postgres_database()).result()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database URL: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'journal.db').as_posix()}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty journal on SQLite, then on PostgreSQL."""
    from ffe.store import migrate
    from ffe.store.database import Database

    database = Database(database_url)
    await migrate.upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for tests of PostgreSQL-only behaviour."""
    with postgres_database() as url:
        yield url


# --- Redis: the kv backends' tests run against a real Redis -------------------------------

REDIS_URL = os.environ.get("FFE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@functools.cache
def _redis_problem() -> str | None:
    """Why Redis cannot be used for tests, or None when it can."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from ffe.kv import redact_url

    client = redis.Redis.from_url(
        REDIS_URL, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:  # any failure to answer is the reason to report
        return f"Redis at {redact_url(REDIS_URL)} is not reachable ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None


def require_redis() -> None:
    """Skip without Redis on a developer machine; fail under CI=true, where it must be."""
    problem = _redis_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem}; CI=true requires it (set FFE_TEST_REDIS_URL)")
    pytest.skip(f"{problem}; set FFE_TEST_REDIS_URL or start Redis to run this")


@pytest.fixture
def redis_url() -> str:
    """The URL of the test Redis (FFE_TEST_REDIS_URL); tests keep to keys of their own."""
    require_redis()
    return REDIS_URL
