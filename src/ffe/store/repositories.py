"""Repositories over one session, and the unit of work that commits them together.

    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="backtest", strategy="sma_cross", code_version=...)
        await uow.journal.add_decisions(run.id, rows)
    # committed here; on an exception nothing of the block is kept

Bulk writes (decisions, trades, equity) are one driver-level ``executemany`` per batch: the
INSERT is compiled once per table, dialect and set of columns, each column's values go through
its type's bind processor in one pass, and values shared by the whole batch (the run id, the
``created_at`` default) are converted once rather than once per row.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import uuid4

from sqlalchemy import ColumnDefault, Dialect, Row, Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ffe.domain.errors import NotFoundError, StoreError
from ffe.domain.orders import Trade
from ffe.store.database import Database
from ffe.store.models import (
    AuditEntry,
    Decision,
    DecisionOutcome,
    EquityPoint,
    Fill,
    Order,
    PositionSnapshot,
    Run,
    TradeRow,
)
from ffe.store.types import utc_now

_HEX = re.compile(r"[0-9a-f]{4,32}")

Processor = Callable[[Any], Any]


@functools.lru_cache(maxsize=64)
def _bulk_insert(
    table: Table, dialect: Dialect, columns: frozenset[str]
) -> tuple[str, tuple[str, ...], tuple[Processor | None, ...]]:
    """The driver-level INSERT of ``columns`` into ``table``, the column of each positional
    parameter in order, and each one's bind processor (None when the driver takes the value
    as it is)."""
    compiled = insert(table).compile(
        dialect=dialect, column_keys=sorted(columns), for_executemany=True
    )
    order = tuple(compiled.positiontup or ())
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
    )
    return str(compiled), order, processors


def _defaults(table: Table, given: Iterable[str]) -> dict[str, Any]:
    """Python-side defaults of the columns not in ``given``, evaluated once for a batch."""
    found: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in given or default is None:
            continue
        if not isinstance(default, ColumnDefault) or default.is_clause_element:
            raise TypeError(f"{table.name}.{column.name}: bulk inserts take Python defaults only")
        found[column.name] = default.arg(None) if default.is_callable else default.arg
    return found


def _column_values(
    name: str,
    process: Processor | None,
    rows: Sequence[Mapping[str, Any]],
    shared: Mapping[str, Any],
) -> Iterable[Any]:
    """What the driver gets for column ``name``: one converted value repeated for a shared
    column, else every row's value (None where a row leaves it out), converted."""
    if name in shared:
        value = shared[name]
        return itertools.repeat(value if process is None else process(value), len(rows))
    values = [row.get(name) for row in rows]
    return values if process is None else [process(value) for value in values]


def new_id() -> str:
    return uuid4().hex


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        kind: str,
        strategy: str,
        code_version: str,
        params: Mapping[str, Any] | None = None,
        symbols: Sequence[str] = (),
        timeframe: str | None = None,
        config: Mapping[str, Any] | None = None,
        data_fingerprint: str | None = None,
        started_at: datetime | None = None,
        run_id: str | None = None,
    ) -> Run:
        run = Run(
            id=run_id or new_id(),
            kind=kind,
            strategy=strategy,
            params=dict(params or {}),
            symbols=list(symbols),
            timeframe=timeframe,
            config=dict(config or {}),
            code_version=code_version,
            data_fingerprint=data_fingerprint,
            status="running",
            started_at=started_at or utc_now(),
        )
        self.session.add(run)
        await self.session.flush()
        return run

    async def finish(self, run: Run, stats: Mapping[str, Any] | None = None) -> None:
        run.status, run.finished_at = "finished", utc_now()
        run.stats = dict(stats) if stats is not None else None
        await self.session.flush()

    async def fail(self, run: Run, error: str, *, status: str = "failed") -> None:
        run.status, run.finished_at, run.error = status, utc_now(), error
        await self.session.flush()

    async def get(self, ref: str) -> Run:
        """The run whose id is ``ref`` or starts with it (at least 4 hex characters)."""
        ref = ref.strip().lower()
        if not _HEX.fullmatch(ref):
            raise NotFoundError(
                f"{ref!r} is not a run id: give 4 to 32 hex digits from `ffe runs list`"
            )
        found = (
            await self.session.scalars(select(Run).where(Run.id.startswith(ref)).limit(2))
        ).all()
        if not found:
            raise NotFoundError(f"no run {ref!r} in this journal (see `ffe runs list`)")
        if len(found) > 1:
            raise NotFoundError(f"run id {ref!r} is ambiguous: give more of it")
        return found[0]

    async def list(
        self,
        *,
        kind: str | None = None,
        strategy: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Newest first."""
        query = select(Run).order_by(Run.started_at.desc(), Run.id).limit(limit).offset(offset)
        if kind is not None:
            query = query.where(Run.kind == kind)
        if strategy is not None:
            query = query.where(Run.strategy == strategy)
        return list((await self.session.scalars(query)).all())

    async def delete(self, run: Run) -> None:
        await self.session.execute(delete(Run).where(Run.id == run.id))


class JournalRepository:
    """What runs produced: decisions, orders, fills, trades and equity."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _insert_many(
        self, model: Any, rows: Sequence[Mapping[str, Any]], **shared: Any
    ) -> int:
        """INSERT ``rows`` into ``model``'s table in one executemany; ``shared`` values go in
        every row. The columns are those any row names, the shared ones and the ones with a
        Python default; a row that leaves one of them out gets None there."""
        if not rows:
            return 0
        table = cast(Table, model.__table__)
        named = frozenset().union(*rows, shared)
        unknown = named - set(table.c.keys())
        if unknown:
            raise StoreError(f"{table.name} has no column {', '.join(sorted(unknown))}")
        shared = _defaults(table, named) | shared
        await self.session.flush()  # anything pending (a run the rows point to) goes first
        connection = await self.session.connection()
        sql, order, processors = _bulk_insert(table, connection.dialect, named | set(shared))
        try:
            columns = [
                _column_values(name, process, rows, shared)
                for name, process in zip(order, processors, strict=True)
            ]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"could not write to {table.name}: {exc}") from exc
        await connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))
        return len(rows)

    async def add_decisions(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write decision rows (``time``, ``symbol``, ``target`` and optional ``confidence``,
        ``rationale``, ``votes``, ``inputs_fingerprint``) in one statement; return the count."""
        return await self._insert_many(Decision, list(rows), run_id=run_id)

    async def decision_ids(self, run_id: str) -> list[int]:
        """Ids of a run's decisions in the order they were written."""
        query = select(Decision.id).where(Decision.run_id == run_id).order_by(Decision.id)
        return list((await self.session.scalars(query)).all())

    async def add_outcomes(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write decision outcome rows (``decision_id``, ``horizon``, ``realized_return``,
        ``hit``, ``resolved_at``) in one statement; return the count."""
        return await self._insert_many(DecisionOutcome, list(rows))

    async def decisions_with_outcomes(self, run_id: str) -> Sequence[Row[Any]]:
        """Every decision of a run, oldest first, with its outcome columns (``horizon``,
        ``realized_return``, ``hit``, ``resolved_at``; None while unresolved)."""
        d, o = Decision.__table__, DecisionOutcome.__table__
        query = (
            select(
                d.c.id,
                d.c.time,
                d.c.symbol,
                d.c.target,
                d.c.confidence,
                d.c.rationale,
                d.c.votes,
                o.c.horizon,
                o.c.realized_return,
                o.c.hit,
                o.c.resolved_at,
            )
            .select_from(d.outerjoin(o, o.c.decision_id == d.c.id))
            .where(d.c.run_id == run_id)
            .order_by(d.c.id)
        )
        return cast(Sequence[Row[Any]], (await self.session.execute(query)).all())

    async def last_decisions(self, run_id: str, limit: int = 1000) -> Sequence[Row[Any]]:
        """The newest ``limit`` decisions of a run, newest first, as read-only rows with the
        ``decisions`` columns as attributes (``row.time``, ``row.votes``, ...).

        Plain rows, not ORM objects: building a thousand tracked objects costs several times
        the query itself, and a dashboard or calibration table only reads them."""
        table = Decision.__table__
        query = (
            select(*table.columns)
            .where(table.c.run_id == run_id)
            .order_by(table.c.id.desc())
            .limit(limit)
        )
        return (await self.session.execute(query)).all()

    async def count(self, model: Any, run_id: str) -> int:
        query = select(func.count()).select_from(model).where(model.run_id == run_id)
        return int((await self.session.execute(query)).scalar_one())

    async def add_trades(self, run_id: str, trades: Iterable[Trade]) -> int:
        rows = [
            {
                "run_id": run_id,
                "symbol": t.symbol,
                "entry_time": t.entry_time,
                "exit_time": t.exit_time,
                "entry_price": t.entry_price,
                "exit_price": t.exit_price,
                "quantity": t.quantity,
                "pnl": t.pnl,
                "commission": t.commission,
            }
            for t in trades
        ]
        return await self._insert_many(TradeRow, rows)

    async def trades(self, run_id: str) -> list[Trade]:
        query = select(TradeRow).where(TradeRow.run_id == run_id).order_by(TradeRow.id)
        return [
            Trade(
                symbol=r.symbol,
                entry_time=r.entry_time,
                exit_time=r.exit_time,
                entry_price=r.entry_price,
                exit_price=r.exit_price,
                quantity=r.quantity,
                pnl=r.pnl,
                commission=r.commission,
            )
            for r in (await self.session.scalars(query)).all()
        ]

    async def add_equity(
        self,
        run_id: str,
        times: Sequence[datetime],
        equity: Sequence[float],
        benchmark: Sequence[float | None] | None = None,
        cash: Sequence[float | None] | None = None,
    ) -> int:
        if len(equity) != len(times):
            raise ValueError(f"{len(times)} times but {len(equity)} equity values")
        rows = [
            {
                "run_id": run_id,
                "time": time,
                "equity": value,
                "benchmark": None if benchmark is None else benchmark[i],
                "cash": None if cash is None else cash[i],
            }
            for i, (time, value) in enumerate(zip(times, equity, strict=True))
        ]
        return await self._insert_many(EquityPoint, rows)

    async def equity(self, run_id: str) -> list[EquityPoint]:
        query = select(EquityPoint).where(EquityPoint.run_id == run_id).order_by(EquityPoint.time)
        return list((await self.session.scalars(query)).all())

    async def add_order(self, order: Order) -> Order:
        self.session.add(order)
        await self.session.flush()
        return order

    async def order_by_client_id(self, client_order_id: str) -> Order | None:
        query = select(Order).where(Order.client_order_id == client_order_id)
        return (await self.session.scalars(query)).one_or_none()

    async def add_fill(self, fill: Fill) -> Fill:
        self.session.add(fill)
        await self.session.flush()
        return fill

    async def add_fills(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Many fills at once (a backtest's): ``time``, ``symbol``, ``quantity``, ``price``
        and ``commission`` each, in the order they happened."""
        return await self._insert_many(Fill, rows, run_id=run_id)

    async def fills(self, run_id: str) -> list[Fill]:
        """A run's fills in the order they were journaled (the order they happened)."""
        query = select(Fill).where(Fill.run_id == run_id).order_by(Fill.id)
        return list((await self.session.scalars(query)).all())

    async def add_positions(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Position snapshots: ``time``, ``symbol``, ``quantity``, ``mark_price`` and maybe
        ``average_price`` each."""
        return await self._insert_many(PositionSnapshot, rows, run_id=run_id)

    async def positions(self, run_id: str) -> list[PositionSnapshot]:
        """A run's position snapshots, oldest first."""
        query = select(PositionSnapshot).where(PositionSnapshot.run_id == run_id)
        return list((await self.session.scalars(query.order_by(PositionSnapshot.id))).all())


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            actor=actor,
            action=action,
            target=target,
            details=dict(details) if details is not None else None,
            time=utc_now(),
        )
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def recent(self, limit: int = 100) -> list[AuditEntry]:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())


@dataclass(frozen=True)
class UnitOfWork:
    session: AsyncSession
    runs: RunRepository
    journal: JournalRepository
    audit: AuditRepository


@asynccontextmanager
async def unit_of_work(db: Database) -> AsyncIterator[UnitOfWork]:
    """One transaction over every repository: committed when the block ends, rolled back
    (nothing kept) when it raises. Database failures come out as ``StoreError``."""
    async with db.session() as session:
        yield UnitOfWork(
            session=session,
            runs=RunRepository(session),
            journal=JournalRepository(session),
            audit=AuditRepository(session),
        )
