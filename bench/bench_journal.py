"""ffe's journal against the driver beneath it: decision rows written in batches, and read back.

On each engine (SQLite in a temporary file; PostgreSQL in a scratch database created for the
run and dropped after it), the journal schema is migrated, then:

- write: ``--batches`` batches of ``--batch-rows`` decision rows, each batch one transaction.
  ffe: ``unit_of_work(db)`` + ``uow.journal.add_decisions``. Raw baseline, same rows, same
  table, same database: the driver's ``executemany`` in one transaction per batch (``sqlite3``
  with ffe's PRAGMAs: WAL, synchronous=FULL, foreign keys; ``asyncpg``). Both start from the
  same Python rows (dicts with aware datetimes and a dict of votes), so the baseline pays for
  its own conversions (timestamps, JSON). The cases take turns for ``--rounds`` rounds (the
  order reversed every round) and the median round gives rows/s. On PostgreSQL,
  ``copy_records_to_table`` is timed too, as an extra line; the ratio is against executemany.
- read: the newest 1,000 decisions of a run holding ``--read-rows`` (written by ffe, untimed),
  through ``unit_of_work`` + ``uow.journal.last_decisions`` (median of ``--read-repeats``). On
  PostgreSQL the table is analysed first, as autovacuum would after such a load.

    python -m bench.bench_journal [--postgres-url URL | --skip-postgres] [--no-write] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import asyncpg
from sqlalchemy import make_url, text

from bench.common import machine, table, utc_now, verdict, versions, write_result
from ffe.store import migrate
from ffe.store.database import Database, DatabaseOptions, mask
from ffe.store.repositories import unit_of_work

TARGET_RATIO = 0.5
TARGET_ROWS_PER_S = 20_000.0
TARGET_READ_MS = 20.0
READ_LIMIT = 1000
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

COLUMNS = (
    "run_id",
    "time",
    "symbol",
    "target",
    "confidence",
    "rationale",
    "votes",
    "inputs_fingerprint",
    "created_at",
)
_NAMES = ", ".join(COLUMNS)
SQLITE_INSERT = f"INSERT INTO decisions ({_NAMES}) VALUES ({', '.join('?' * len(COLUMNS))})"
POSTGRES_INSERT = (
    f"INSERT INTO decisions ({_NAMES}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))})"
)
SQLITE_READ = f"SELECT id, {_NAMES} FROM decisions WHERE run_id = ? ORDER BY id DESC LIMIT ?"
POSTGRES_READ = f"SELECT id, {_NAMES} FROM decisions WHERE run_id = $1 ORDER BY id DESC LIMIT $2"

Row = Mapping[str, Any]
WriteBatch = Callable[[str, Sequence[Row]], Awaitable[None]]


def decision_rows(n: int) -> list[dict[str, Any]]:
    """``n`` decisions as a strategy would journal them: one bar, many symbols."""
    start = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    return [
        {
            "time": start + timedelta(minutes=i // 20),
            "symbol": f"SYM{i % 20:02d}",
            "target": (i % 5 - 2) / 2,
            "confidence": 0.5 + (i % 7) / 20,
            "rationale": f"ensemble {i}: trend up, volatility normal, spread ok",
            "votes": {"ets": 0.25, "arima": -0.5, "theta": (i % 9) / 10},
            "inputs_fingerprint": f"{i * 2654435761 % 2**64:016x}",
        }
        for i in range(n)
    ]


def _sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores an instant in SQLite: UTC wall time with microseconds."""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


class RawJournal(Protocol):
    """The same writes and reads as ffe's journal, straight through the driver."""

    label: str
    read_label: str

    async def write(self, run_id: str, rows: Sequence[Row]) -> None: ...

    async def read_last(self, run_id: str, limit: int) -> int: ...

    async def close(self) -> None: ...


class SqliteRaw:
    """``sqlite3`` on the same file, with the PRAGMAs ffe's engine sets on its connections."""

    label = "sqlite3 executemany"
    read_label = "sqlite3 fetchall (tuples)"

    def __init__(self, path: Path, options: DatabaseOptions) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={options.busy_timeout_ms}",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA synchronous={options.sqlite_synchronous}",
        ):
            self.connection.execute(pragma)

    async def write(self, run_id: str, rows: Sequence[Row]) -> None:
        created = _sqlite_time(datetime.now(UTC))
        records = [
            (
                run_id,
                _sqlite_time(row["time"]),
                row["symbol"],
                row["target"],
                row.get("confidence"),
                row.get("rationale"),
                json.dumps(row.get("votes")),
                row.get("inputs_fingerprint"),
                created,
            )
            for row in rows
        ]
        self.connection.execute("BEGIN")
        try:
            self.connection.executemany(SQLITE_INSERT, records)
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    async def read_last(self, run_id: str, limit: int) -> int:
        return len(self.connection.execute(SQLITE_READ, (run_id, limit)).fetchall())

    async def close(self) -> None:
        self.connection.close()


def _postgres_records(run_id: str, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    created = datetime.now(UTC)
    return [
        (
            run_id,
            row["time"],
            row["symbol"],
            row["target"],
            row.get("confidence"),
            row.get("rationale"),
            json.dumps(row.get("votes")),
            row.get("inputs_fingerprint"),
            created,
        )
        for row in rows
    ]


class PostgresRaw:
    """One ``asyncpg`` connection to the same database."""

    label = "asyncpg executemany"
    read_label = "asyncpg fetch (records)"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @classmethod
    async def connect(cls, url: str) -> PostgresRaw:
        return cls(await asyncpg.connect(url))

    async def write(self, run_id: str, rows: Sequence[Row]) -> None:
        records = _postgres_records(run_id, rows)
        async with self.connection.transaction():
            await self.connection.executemany(POSTGRES_INSERT, records)

    async def copy(self, run_id: str, rows: Sequence[Row]) -> None:
        records = _postgres_records(run_id, rows)
        async with self.connection.transaction():
            await self.connection.copy_records_to_table(
                "decisions", records=records, columns=COLUMNS
            )

    async def read_last(self, run_id: str, limit: int) -> int:
        return len(await self.connection.fetch(POSTGRES_READ, run_id, limit))

    async def close(self) -> None:
        await self.connection.close()


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Samples:
    """Seconds per sample; ``per_sample`` is what one sample handles (rows, or reads)."""

    per_sample: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.per_sample / self.median

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": min(self.seconds),
            "max_s": max(self.seconds),
            "samples": len(self.seconds),
            "per_s": self.rate,
        }


def ffe_writer(db: Database) -> WriteBatch:
    async def write(run_id: str, rows: Sequence[Row]) -> None:
        async with unit_of_work(db) as uow:
            await uow.journal.add_decisions(run_id, rows)

    return write


async def new_run(db: Database, strategy: str) -> str:
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="backtest", strategy=strategy, code_version="bench")
        return run.id


async def count_rows(db: Database, run_id: str) -> int:
    async with unit_of_work(db) as uow:
        query = text("SELECT count(*) FROM decisions WHERE run_id = :run_id")
        return int((await uow.session.execute(query, {"run_id": run_id})).scalar_one())


async def time_batches(write: WriteBatch, run_id: str, rows: Sequence[Row], batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        await write(run_id, rows)
    return time.perf_counter() - start


async def measure_writes(
    db: Database, cases: Mapping[str, WriteBatch], rows: Sequence[Row], args: argparse.Namespace
) -> dict[str, Samples]:
    """Every case writes ``args.batches`` batches per round into a run of its own, in turns."""
    names = list(cases)
    warmup = await new_run(db, "bench-warmup")
    for name in names:
        await cases[name](warmup, rows)
    samples = {name: Samples(per_sample=args.batches * len(rows)) for name in names}
    for number in range(args.rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            run_id = await new_run(db, f"bench-{name}")
            samples[name].seconds.append(
                await time_batches(cases[name], run_id, rows, args.batches)
            )
            written = await count_rows(db, run_id)
            if written != args.batches * len(rows):
                raise RuntimeError(f"{name} wrote {written} rows, not {args.batches * len(rows)}")
    return samples


async def time_reads(read: Callable[[], Awaitable[int]], repeats: int) -> Samples:
    for _ in range(3):
        await read()
    samples = Samples(per_sample=1)
    for _ in range(repeats):
        start = time.perf_counter()
        got = await read()
        samples.seconds.append(time.perf_counter() - start)
        if got != READ_LIMIT:
            raise RuntimeError(f"read {got} decisions, not {READ_LIMIT}")
    return samples


def ffe_reader(db: Database, run_id: str) -> Callable[[], Awaitable[int]]:
    async def read() -> int:
        async with unit_of_work(db) as uow:
            return len(await uow.journal.last_decisions(run_id, limit=READ_LIMIT))

    return read


async def measure_reads(
    db: Database, raw: RawJournal, rows: Sequence[Row], args: argparse.Namespace
) -> dict[str, Samples]:
    run_id = await new_run(db, "bench-read")
    write = ffe_writer(db)
    for start in range(0, args.read_rows, len(rows)):
        await write(run_id, rows[: args.read_rows - start])
    found: dict[str, Samples] = {}
    if not db.is_sqlite:
        found["ffe, before ANALYZE"] = await time_reads(ffe_reader(db, run_id), 5)
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE decisions")
    found["ffe"] = await time_reads(ffe_reader(db, run_id), args.read_repeats)
    found[raw.read_label] = await time_reads(
        lambda: raw.read_last(run_id, READ_LIMIT), args.read_repeats
    )
    return found


# --- engines --------------------------------------------------------------------------------


@dataclass
class EngineResult:
    engine: str
    server: str
    writes: dict[str, Samples]
    reads: dict[str, Samples]
    raw_label: str

    @property
    def ffe_rate(self) -> float:
        return self.writes["ffe"].rate

    @property
    def ratio(self) -> float:
        return self.ffe_rate / self.writes[self.raw_label].rate

    @property
    def ratio_best(self) -> float:
        return min(self.writes[self.raw_label].seconds) / min(self.writes["ffe"].seconds)

    @property
    def read_ms(self) -> float:
        return self.reads["ffe"].median * 1e3

    @property
    def checks(self) -> dict[str, bool]:
        return {
            "ratio": self.ratio >= TARGET_RATIO,
            "rows_per_s": self.ffe_rate >= TARGET_ROWS_PER_S,
            "read_ms": self.read_ms < TARGET_READ_MS,
        }


async def measure_engine(
    engine: str, db: Database, raw: RawJournal, server: str, args: argparse.Namespace
) -> EngineResult:
    await migrate.upgrade(db)
    rows = decision_rows(args.batch_rows)
    cases: dict[str, WriteBatch] = {"ffe": ffe_writer(db), raw.label: raw.write}
    if isinstance(raw, PostgresRaw):
        cases["asyncpg copy_records_to_table (extra)"] = raw.copy
    writes = await measure_writes(db, cases, rows, args)
    reads = await measure_reads(db, raw, rows, args)
    return EngineResult(engine, server, writes, reads, raw.label)


async def run_sqlite(args: argparse.Namespace) -> EngineResult:
    with tempfile.TemporaryDirectory(prefix="ffe-bench-journal-") as folder:
        path = Path(folder) / "journal.db"
        db = Database(f"sqlite:///{path.as_posix()}")
        raw = SqliteRaw(path, db.options)
        try:
            return await measure_engine("sqlite", db, raw, f"SQLite {sqlite3.sqlite_version}", args)
        finally:
            await raw.close()
            await db.dispose()


def _plain(url: str) -> str:
    """The URL as asyncpg takes it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_postgres(url: str) -> AsyncIterator[str]:
    """A new database on the server ``url`` points at, dropped when the block ends."""
    name = f"ffe_bench_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(_plain(url), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(_plain(url)).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run_postgres(url: str, args: argparse.Namespace) -> EngineResult:
    async with scratch_postgres(url) as scratch:
        db = Database(scratch)
        raw = await PostgresRaw.connect(scratch)
        try:
            settings = [
                f"{name}={await raw.connection.fetchval(f'SHOW {name}')}"
                for name in ("server_version", "synchronous_commit", "fsync")
            ]
            server = f"PostgreSQL {', '.join(settings)}"
            return await measure_engine("postgresql", db, raw, server, args)
        finally:
            await raw.close()
            await db.dispose()


# --- report ---------------------------------------------------------------------------------


def print_report(results: Sequence[EngineResult], skipped: Mapping[str, str], args: Any) -> None:
    print(
        f"journal writes: {args.batches} batches x {args.batch_rows:,} decision rows, one "
        f"transaction per batch, {args.rounds} rounds taking turns (median round); reads: the "
        f"last {READ_LIMIT:,} of {args.read_rows:,} decisions, median of {args.read_repeats}"
    )
    write_rows = [
        [f"{r.engine}: {name}", s.rate, s.median, min(s.seconds)]
        for r in results
        for name, s in r.writes.items()
    ]
    print(table(["write", "rows/s", "median s", "min s"], write_rows))
    read_rows = [
        [f"{r.engine}: {name}", s.median * 1e3, min(s.seconds) * 1e3, max(s.seconds) * 1e3]
        for r in results
        for name, s in r.reads.items()
    ]
    print(table(["read last 1,000", "median ms", "min ms", "max ms"], read_rows))
    for r in results:
        checks = r.checks
        print(
            f"{r.engine} ({r.server}): ffe {r.ffe_rate:,.0f} rows/s "
            f"(>= {TARGET_ROWS_PER_S:,.0f}: {verdict(checks['rows_per_s'])}), "
            f"{r.ratio:.2f} of {r.raw_label} (>= {TARGET_RATIO}: {verdict(checks['ratio'])}; "
            f"{r.ratio_best:.2f} on best rounds), "
            f"read {r.read_ms:.1f} ms (< {TARGET_READ_MS:.0f}: {verdict(checks['read_ms'])})"
        )
    for engine, reason in skipped.items():
        print(f"{engine}: not measured ({reason})")


def engine_payload(result: EngineResult) -> dict[str, Any]:
    return {
        "server": result.server,
        "writes_rows": {name: s.as_dict() for name, s in result.writes.items()},
        "reads_last_1000": {name: s.as_dict() for name, s in result.reads.items()},
        "ffe_rows_per_s": result.ffe_rate,
        "raw_baseline": result.raw_label,
        "ratio_to_raw": result.ratio,
        "ratio_to_raw_best_rounds": result.ratio_best,
        "read_median_ms": result.read_ms,
        "checks": result.checks,
        "passed": all(result.checks.values()),
    }


def payload(
    results: Sequence[EngineResult], skipped: Mapping[str, str], args: Any, load: Any
) -> dict[str, Any]:
    return {
        "benchmark": "journal",
        "date": utc_now(),
        "workload": {
            "batches": args.batches,
            "batch_rows": args.batch_rows,
            "rounds": args.rounds,
            "read_rows": args.read_rows,
            "read_limit": READ_LIMIT,
            "read_repeats": args.read_repeats,
            "row": "decision: time, symbol, target, confidence, rationale, votes (JSON), "
            "inputs_fingerprint",
        },
        "method": {
            "ffe_write": "unit_of_work + journal.add_decisions, one per batch",
            "raw_write": "driver executemany, one transaction per batch, same rows and table",
            "ffe_read": "unit_of_work + journal.last_decisions(limit=1000)",
            "headline": "median round (writes), median read",
        },
        "targets": {
            "ratio_to_raw": TARGET_RATIO,
            "rows_per_s": TARGET_ROWS_PER_S,
            "read_ms": TARGET_READ_MS,
        },
        "engines": {r.engine: engine_payload(r) for r in results},
        "skipped": dict(skipped),
        "passed": bool(results) and not skipped and all(all(r.checks.values()) for r in results),
        "versions": versions("ffe", "sqlalchemy", "aiosqlite", "asyncpg", "alembic"),
        "machine": machine() | {"load_average_before": load},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50, help="batches per round and case")
    parser.add_argument("--batch-rows", type=int, default=1000, help="decision rows per batch")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each case")
    parser.add_argument("--read-rows", type=int, default=100_000, help="decisions in the run read")
    parser.add_argument("--read-repeats", type=int, default=30, help="timed reads")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="server to use")
    parser.add_argument("--skip-postgres", action="store_true", help="measure SQLite only")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON result")
    return parser.parse_args(argv)


async def measure_all(args: argparse.Namespace) -> tuple[list[EngineResult], dict[str, str]]:
    results = [await run_sqlite(args)]
    skipped: dict[str, str] = {}
    if args.skip_postgres:
        skipped["postgresql"] = "--skip-postgres"
        return results, skipped
    try:
        results.append(await run_postgres(args.postgres_url, args))
    except (OSError, asyncpg.PostgresError) as exc:
        skipped["postgresql"] = f"{mask(args.postgres_url)} not usable: {exc}"
    return results, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = machine()["load_average_1_5_15"]
    results, skipped = asyncio.run(measure_all(args))
    print_report(results, skipped, args)
    result = payload(results, skipped, args, load_before)
    if not args.no_write:
        path = write_result("journal", result)
        print(f"wrote {path.relative_to(path.parents[2])}")
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
