"""Journal reads through PgBouncer: a client-side pool against none (NullPool), same run.

A scratch database is created on the test PostgreSQL (``--postgres-url``, dropped after the
run) and migrated; a private PgBouncer in transaction mode (tests/support/pgbouncer.py,
SCRAM-SHA-256 client logins as in production, ``--server-pool`` server connections) is put in
front of it. Then, for each engine in turn (the order reversed every round, ``--rounds``
rounds), ``--tasks`` concurrent tasks read a run and its newest 100 decisions through
``unit_of_work`` for ``--seconds`` seconds: reads/s, and the median and p90 latency.

- pooled: ffe's engine with ``database.pgbouncer=true`` (pool_size 5, max_overflow 10).
- nullpool: the same engine options with SQLAlchemy's NullPool, ffe's engine before the
  change: every unit of work opens a client connection to PgBouncer and logs in.

Afterwards it counts the prepared statements left on PgBouncer's server connections (each
server connection is held by one open transaction while it is counted).

    python -m bench.bench_pgbouncer_pool [--postgres-url URL] [--seconds 5] [--tasks 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))  # pgbouncer.py: the private PgBouncer

from pgbouncer import private_pgbouncer  # noqa: E402

from ffe.store import migrate  # noqa: E402
from ffe.store.database import Database, DatabaseOptions  # noqa: E402
from ffe.store.repositories import unit_of_work  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "FFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-pool", type=int, default=4)
    parser.add_argument("--scram", action="store_true", help="SCRAM client logins, not trust")
    parser.add_argument(
        "--deallocate", action="store_true", help="PgBouncer: DEALLOCATE ALL after each transaction"
    )
    parser.add_argument(
        "--engines", default="nullpool,pooled", help="which engines (comma-separated)"
    )
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def nullpool(db: Database) -> Database:
    """``db`` with its engine rebuilt on NullPool (the same connect arguments)."""
    pooled = db.engine
    connect_args = {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__ffe_{uuid.uuid4().hex}__",
    }
    db.engine = create_async_engine(
        db.url, poolclass=NullPool, pool_pre_ping=True, connect_args=connect_args
    )
    db.sessions = async_sessionmaker(db.engine, expire_on_commit=False)
    asyncio.get_running_loop().create_task(pooled.dispose())
    return db


async def seed(db: Database) -> str:
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(
            kind="paper", strategy="b", code_version="t", params={}, symbols=["SP500"], config={}
        )
        t0 = datetime(2024, 1, 1, tzinfo=UTC)
        await uow.journal.add_decisions(
            run.id,
            [
                {"time": t0 + timedelta(minutes=i), "symbol": "SP500", "target": 0.1}
                for i in range(500)
            ],
        )
    return str(run.id)


async def load(db: Database, run_id: str, tasks: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def reader() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            async with unit_of_work(db) as uow:
                await uow.runs.get(run_id)
                await uow.journal.last_decisions(run_id, limit=100)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(tasks)))
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=10)
    return {
        "reads_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p90_ms": round(cuts[-1] * 1000, 2),
        "reads": len(latencies),
    }


async def prepared_left(url: str, server_pool: int) -> list[int]:
    """Prepared statements on each server connection: ``server_pool`` transactions held open
    at once, so each runs on a server connection of its own."""
    clients = [await asyncpg.connect(url, statement_cache_size=0) for _ in range(server_pool)]
    try:
        transactions = [c.transaction() for c in clients]
        for t in transactions:
            await t.start()
        counts = [
            int(await c.fetchval("SELECT count(*) FROM pg_prepared_statements")) for c in clients
        ]
        for t in transactions:
            await t.rollback()
        return counts
    finally:
        for c in clients:
            await c.close()


async def bench(args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    direct = Database(server_url)
    await migrate.upgrade(direct)
    await direct.dispose()
    password = "bench" if args.scram else None
    with private_pgbouncer(
        server_url, pool_size=args.server_pool, password=password, deallocate=args.deallocate
    ) as bouncer:
        options = DatabaseOptions(pgbouncer=True)
        seeder = Database(bouncer.url, options)
        run_id = await seed(seeder)
        await seeder.dispose()
        order = args.engines.split(",")
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
        for _ in range(args.rounds):
            for name in order:
                db = Database(bouncer.url, options)
                if name == "nullpool":
                    db = nullpool(db)
                logins = bouncer.logins()
                result = await load(db, run_id, args.tasks, args.seconds)
                result["client_logins"] = bouncer.logins() - logins
                await db.dispose()
                results[name].append(result)
                print(name, result, flush=True)
            order.reverse()
        left = await prepared_left(bouncer.url.replace("+asyncpg", ""), args.server_pool)
    best = {
        name: max(rows, key=lambda r: float(r["reads_per_s"])) for name, rows in results.items()
    }
    ratio = None
    if len(best) == 2:
        ratio = round(best["pooled"]["reads_per_s"] / best["nullpool"]["reads_per_s"], 1)
    return {
        "rounds": results,
        "best": best,
        "ratio_pooled_over_nullpool": ratio,
        "deallocate": args.deallocate,
        "prepared_statements_left_per_server_connection": left,
        "tasks": args.tasks,
        "seconds": args.seconds,
        "load_average": os.getloadavg(),
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    base, _, _ = args.postgres_url.rpartition("/")
    name = f"ffe_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(args.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return await bench(args, f"{base}/{name}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = asyncio.run(amain(args))
    print(json.dumps({k: v for k, v in out.items() if k != "rounds"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
