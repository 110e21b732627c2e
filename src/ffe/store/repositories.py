"""Repositories over one session, and the unit of work that commits them together.

    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="backtest", strategy="sma_cross", code_version=...)
        await uow.journal.add_decisions(run.id, rows)
    # committed here; on an exception nothing of the block is kept

Bulk writes (decisions, trades, equity) go through Core ``INSERT ... executemany`` so a
batch of thousands of rows is one round trip per few hundred rows, not one per row.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ffe.domain.errors import StoreError
from ffe.domain.orders import Trade
from ffe.store.database import Database
from ffe.store.models import (
    AuditEntry,
    Decision,
    EquityPoint,
    Fill,
    Order,
    Run,
    TradeRow,
)
from ffe.store.types import utc_now

_HEX = re.compile(r"[0-9a-f]{4,32}")


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
    ) -> Run:
        run = Run(
            id=new_id(),
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
            raise StoreError(
                f"{ref!r} is not a run id: give 4 to 32 hex digits from `ffe runs list`"
            )
        found = (
            await self.session.scalars(select(Run).where(Run.id.startswith(ref)).limit(2))
        ).all()
        if not found:
            raise StoreError(f"no run {ref!r} in this journal (see `ffe runs list`)")
        if len(found) > 1:
            raise StoreError(f"run id {ref!r} is ambiguous: give more of it")
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

    async def _insert_many(self, table: Any, rows: list[dict[str, Any]]) -> int:
        if rows:
            await self.session.execute(insert(table), rows)
        return len(rows)

    async def add_decisions(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write decision rows (``time``, ``symbol``, ``target`` and optional ``confidence``,
        ``rationale``, ``votes``, ``inputs_fingerprint``) in one statement; return the count."""
        now = utc_now()
        batch = [{"created_at": now, **row, "run_id": run_id} for row in rows]
        return await self._insert_many(Decision.__table__, batch)

    async def last_decisions(self, run_id: str, limit: int = 1000) -> list[Decision]:
        """The newest ``limit`` decisions of a run, newest first."""
        query = (
            select(Decision)
            .where(Decision.run_id == run_id)
            .order_by(Decision.id.desc())
            .limit(limit)
        )
        return list((await self.session.scalars(query)).all())

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
        return await self._insert_many(TradeRow.__table__, rows)

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
        return await self._insert_many(EquityPoint.__table__, rows)

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
