"""The journal through a real PgBouncer in transaction mode (``database.pgbouncer=true``).

A private PgBouncer (tests/support/pgbouncer.py) with two server connections sits in front of
a fresh PostgreSQL database, so consecutive transactions of one client land on different
server connections: a prepared statement reused across transactions would fail with
"prepared statement ... does not exist" (or "already exists").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.conftest import postgres_database
from tests.support.pgbouncer import PgBouncer, pgbouncer_problem, private_pgbouncer

from ffe.store import migrate
from ffe.store.database import Database, DatabaseOptions
from ffe.store.repositories import unit_of_work

pytestmark = pytest.mark.serial

TASKS = 20
OPERATIONS = 300
OPTIONS = DatabaseOptions(pgbouncer=True, pool_size=4, max_overflow=4, pool_timeout=30)
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def bouncer() -> Iterator[tuple[str, PgBouncer]]:
    """(direct URL, PgBouncer) for a fresh database; skipped (failed under CI=true) without
    PgBouncer or root."""
    problem = pgbouncer_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{problem}; CI=true requires it (.ci/run installs pgbouncer)")
        pytest.skip(problem)
    # deallocate: DEALLOCATE ALL after each transaction, as the bare-metal stack's PgBouncer
    # (1.18, without max_prepared_statements) is configured.
    with (
        postgres_database() as url,
        private_pgbouncer(url, pool_size=2, deallocate=True) as pgbouncer,
    ):
        yield url, pgbouncer


async def _operation(db: Database, task: int, i: int) -> None:
    """One journal operation: write a run with decisions, or read runs and decisions back."""
    if i % 3 == 0:
        async with unit_of_work(db) as uow:
            run = await uow.runs.add(
                kind="paper",
                strategy=f"task{task}",
                code_version="t",
                params={"i": i},
                symbols=["SP500"],
                config={},
            )
            await uow.journal.add_decisions(
                run.id,
                [
                    {"time": T0 + timedelta(minutes=k), "symbol": "SP500", "target": 0.1 * k}
                    for k in range(5)
                ],
            )
        return
    async with unit_of_work(db) as uow:
        runs = await uow.runs.list(strategy=f"task{task}", limit=3)
        for run in runs:
            assert (await uow.runs.get(run.id)).id == run.id
            assert len(await uow.journal.last_decisions(run.id, limit=10)) == 5


async def test_journal_when_behind_pgbouncer_then_operations_succeed_on_a_bounded_pool(
    bouncer: tuple[str, PgBouncer],
) -> None:
    url, pgbouncer = bouncer
    direct = Database(url)
    await migrate.upgrade(direct)  # migrations go straight to PostgreSQL, as in production
    await direct.dispose()
    logins_before = pgbouncer.logins()

    db = Database(pgbouncer.url, OPTIONS)
    failures: list[str] = []

    async def worker(task: int) -> None:
        for i in range(OPERATIONS // TASKS):
            try:
                await _operation(db, task, i)
            except Exception as exc:  # every failure is reported below, with its message
                failures.append(f"task {task} op {i}: {type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*(worker(task) for task in range(TASKS)))
        clients = await asyncio.to_thread(pgbouncer.admin, "SHOW CLIENTS")
        async with unit_of_work(db) as uow:
            written = len(await uow.runs.list(limit=1000))
    finally:
        await db.dispose()

    assert failures == [], "\n".join(failures[:5])
    assert written == TASKS * len(range(0, OPERATIONS // TASKS, 3))
    # Every client connection logs in once: the pool keeps them, NullPool made one per unit of
    # work (about 300 here), each paying PgBouncer's authentication.
    logins = pgbouncer.logins() - logins_before
    bound = OPTIONS.pool_size + OPTIONS.max_overflow
    assert 0 < logins <= bound, f"{logins} client logins for a pool of at most {bound}"
    ours = [c for c in clients if c["database"] != "pgbouncer"]
    assert 0 < len(ours) <= bound, f"{len(ours)} clients open: {ours}"
    # No prepared statement left behind on either server connection.
    assert await _prepared_statements(pgbouncer.url, servers=2) == [0, 0]


async def _prepared_statements(url: str, servers: int) -> list[int]:
    """Prepared statements on each of the ``servers`` server connections: as many
    transactions held open at once, so each runs on a server connection of its own."""
    import asyncpg

    clients = [await asyncpg.connect(url, statement_cache_size=0) for _ in range(servers)]
    try:
        transactions = [client.transaction() for client in clients]
        for transaction in transactions:
            await transaction.start()
        counts = [
            int(await client.fetchval("SELECT count(*) FROM pg_prepared_statements"))
            for client in clients
        ]
        for transaction in transactions:
            await transaction.rollback()
        return counts
    finally:
        for client in clients:
            await client.close()
