"""Read models for the API: the account's portfolio, equity, orders, fills, decisions and
approvals, read from the journal (or, for the portfolio, from the agent running in this
process, which is fresher than its last journal flush)."""

from __future__ import annotations

import contextlib
import functools
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Select,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ffe.agent import persist
from ffe.agent.reports import Snapshot
from ffe.domain.orders import action_of
from ffe.portfolio.trades import RoundTrip
from ffe.runs.journal import journaled_target
from ffe.store.database import Database
from ffe.store.models import Approval, Decision, DecisionOutcome, EquityPoint, Fill, Order, Run


def iso(value: datetime | None) -> str | None:
    """An ISO-8601 time, or None."""
    return None if value is None else value.isoformat()


def finite(value: Any) -> float | None:
    """A float for JSON: None for NaN and infinities (JSON has neither)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    """A page of a list, as every list route answers."""
    return {"items": items, "total": total, "limit": limit, "offset": offset}


async def paged(db: Database, query: Select[Any], limit: int, offset: int) -> tuple[list[Any], int]:
    """One page of ``query``'s rows and how many rows it has in all."""
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    async with db.session() as session:
        total = int(await session.scalar(counted) or 0)
        rows = list((await session.scalars(query.limit(limit).offset(offset))).all())
    return rows, total


async def orders_page(
    db: Database, run: str | None, symbol: str | None, status: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of the run's orders, newest first, maybe of one symbol or status."""
    query = _of_run(Order, run, symbol)
    if status:
        query = query.where(Order.status == status)
    rows, total = await paged(db, query, limit, offset)
    return page([order_dict(r) for r in rows], total, limit, offset)


async def fills_page(
    db: Database, run: str | None, symbol: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of the run's fills, newest first, maybe of one symbol."""
    rows, total = await paged(db, _of_run(Fill, run, symbol), limit, offset)
    return page([fill_dict(r) for r in rows], total, limit, offset)


def _of_run(model: Any, run: str | None, symbol: str | None) -> Select[Any]:
    """The run's rows of ``model`` (orders, fills), newest first, maybe of one symbol."""
    query = select(model).where(model.run_id == (run or "")).order_by(model.id.desc())
    return query.where(model.symbol == symbol) if symbol else query


async def approvals_page(
    db: Database, account: str | None, status: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of approvals, newest first, maybe of one account or status."""
    query = select(Approval).order_by(Approval.id.desc())
    if account:
        query = query.where(Approval.account == account)
    if status:
        query = query.where(Approval.status == status)
    rows, total = await paged(db, query, limit, offset)
    return page([approval_dict(r) for r in rows], total, limit, offset)


async def account_run(db: Database, account: str) -> str | None:
    """The run the account's agent trades (or last traded)."""
    state = await persist.get_state(db, account)
    return None if state is None else state.run_id


# -- portfolio ------------------------------------------------------------------------------


def live_portfolio(
    snapshot: Snapshot | None, peak: float, max_drawdown: float
) -> dict[str, Any] | None:
    """The portfolio of an agent running in this process, from its snapshot; ``peak`` and
    ``max_drawdown`` as its supervisor tracked them bar by bar."""
    if snapshot is None:
        return None
    positions = [
        _position(held.symbol, held.quantity, held.average_price, finite(held.mark))
        for held in snapshot.positions
    ]
    equity = snapshot.equity
    found = _summary(
        snapshot.account,
        snapshot.run_id,
        snapshot.time,
        snapshot.cash,
        equity,
        snapshot.start_cash,
        max(peak, equity),
        positions,
    )
    found["max_drawdown"] = finite(min(max_drawdown, found["drawdown"] or 0.0))
    return found


def _position(
    symbol: str, quantity: float, average: float | None, mark: float | None
) -> dict[str, Any]:
    value = None if mark is None else quantity * mark
    unrealized = None if mark is None or average is None else quantity * (mark - average)
    return {
        "symbol": symbol,
        "quantity": quantity,
        "average_price": finite(average),
        "mark_price": mark,
        "market_value": finite(value),
        "unrealized_pnl": finite(unrealized),
    }


def _summary(
    account: str,
    run_id: str | None,
    as_of: datetime | None,
    cash: float | None,
    equity: float | None,
    start: float | None,
    peak: float | None,
    positions: list[dict[str, Any]],
) -> dict[str, Any]:
    pnl = None if equity is None or start is None else equity - start
    drawdown = None if equity is None or not peak else min(0.0, equity / peak - 1)
    return {
        "account": account,
        "run_id": run_id,
        "as_of": iso(as_of),
        "cash": finite(cash),
        "equity": finite(equity),
        "positions_value": finite(None if equity is None or cash is None else equity - cash),
        "pnl": finite(pnl),
        "return_pct": finite(None if pnl is None or not start else 100 * pnl / start),
        "drawdown": finite(drawdown),
        "max_drawdown": None,
        "positions": positions,
    }


_REPEATABLE = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


@contextlib.asynccontextmanager
async def read_snapshot(db: Database) -> AsyncIterator[AsyncSession]:
    """A session whose reads all see one state of the journal, whatever an agent commits
    meanwhile: SQLite's driver opens no transaction for reads (each would see its own
    moment), so one is begun; PostgreSQL's reads go in one REPEATABLE READ transaction."""
    async with db.session() as session:
        if db.is_sqlite:
            await session.execute(text("BEGIN"))
        else:
            await session.execute(
                text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            )
        yield session


async def journal_portfolio(db: Database, account: str, data_dir: Any) -> dict[str, Any]:
    """The portfolio as the account's journal last recorded it, marked with the bars in
    ``data_dir``; read in one snapshot, so cash, equity and positions are of one moment."""
    run_id = await account_run(db, account)
    if run_id is None:
        return _summary(account, None, None, None, None, None, None, [])
    async with read_snapshot(db) as session:
        run = await session.get(Run, run_id)
        last = await session.scalar(
            select(EquityPoint)
            .where(EquityPoint.run_id == run_id)
            .order_by(EquityPoint.time.desc())
            .limit(1)
        )
        peak = await session.scalar(
            select(func.max(EquityPoint.equity)).where(EquityPoint.run_id == run_id)
        )
        fills = (
            await session.execute(
                select(Fill.symbol, Fill.quantity, Fill.price)
                .where(Fill.run_id == run_id)
                .order_by(Fill.id)
            )
        ).all()
    start = None if run is None else (run.config or {}).get("cash")
    held = _positions_from_fills(fills)
    positions = await _marked(data_dir, held, None if last is None else last.time)
    found = _summary(
        account,
        run_id,
        None if last is None else last.time,
        None if last is None else last.cash,
        None if last is None else last.equity,
        start,
        peak,
        positions,
    )
    stats = (run.stats if run is not None else None) or {}
    found["max_drawdown"] = finite(_negative(stats.get("max_drawdown")))
    return found


def _negative(value: Any) -> float | None:
    """Drawdowns as negative fractions, however a run's stats stored them."""
    if not isinstance(value, int | float):
        return None
    return -abs(float(value))


def _positions_from_fills(fills: Sequence[Any]) -> dict[str, tuple[float, float | None, float]]:
    """Each symbol's position, average price and last fill price from its fills, in order.

    The average is over the lots still held, first in first out, as the agent's ledger keeps
    them, so the journal and a running agent report the same price."""
    lots: dict[str, deque[list[float]]] = {}  # symbol -> [quantity, price] oldest first
    last: dict[str, float] = {}
    for symbol, quantity, price in fills:
        held, remaining = lots.setdefault(symbol, deque()), float(quantity)
        while held and remaining and (held[0][0] > 0) != (remaining > 0):
            take = min(abs(held[0][0]), abs(remaining))
            held[0][0] -= math.copysign(take, held[0][0])
            remaining -= math.copysign(take, remaining)
            if abs(held[0][0]) < 1e-12:
                held.popleft()
        if abs(remaining) > 1e-12:
            held.append([remaining, float(price)])
        last[symbol] = float(price)
    found: dict[str, tuple[float, float | None, float]] = {}
    for symbol, held in sorted(lots.items()):
        quantity = sum(q for q, _ in held)
        if abs(quantity) > 1e-12:
            found[symbol] = (quantity, sum(q * p for q, p in held) / quantity, last[symbol])
    return found


async def _marked(
    data_dir: Any, held: dict[str, tuple[float, float | None, float]], as_of: datetime | None
) -> list[dict[str, Any]]:
    """The positions marked at each symbol's close at ``as_of`` (the last fill's price when
    the bars are not stored); bars are read off the event loop."""
    import asyncio

    found = []
    for symbol, (quantity, average, last) in held.items():
        mark = await asyncio.to_thread(_close_at, data_dir, symbol, as_of) or last
        found.append(_position(symbol, quantity, average, mark))
    return found


def _close_at(data_dir: Any, symbol: str, as_of: datetime | None) -> float | None:
    if as_of is None:
        return None
    series = _closes(str(data_dir), symbol)
    if series is None:
        return None
    times, closes = series
    at = int(np.searchsorted(times, np.datetime64(as_of.replace(tzinfo=None), "ns"), "right"))
    return finite(closes[at - 1]) if at > 0 else None


@functools.lru_cache(maxsize=32)
def _closes(data_dir: str, symbol: str) -> tuple[Any, Any] | None:
    from ffe.data import DataCatalog, load_market
    from ffe.domain.errors import FfeError

    try:
        market = load_market(DataCatalog(Path(data_dir)), [symbol])
    except FfeError:
        return None
    return market.times, market.close[:, 0]


# -- lists ----------------------------------------------------------------------------


def order_dict(order: Order) -> dict[str, Any]:
    """An order as JSON."""
    return {
        "id": order.id,
        "run_id": order.run_id,
        "client_order_id": order.client_order_id,
        "time": iso(order.time),
        "symbol": order.symbol,
        "quantity": order.quantity,
        "order_type": order.order_type,
        "status": order.status,
        "filled_quantity": order.filled_quantity,
    }


def fill_dict(fill: Fill) -> dict[str, Any]:
    """A fill as JSON."""
    return {
        "id": fill.id,
        "run_id": fill.run_id,
        "time": iso(fill.time),
        "symbol": fill.symbol,
        "quantity": fill.quantity,
        "price": fill.price,
        "commission": fill.commission,
    }


def round_trip_dict(trip: RoundTrip, as_of: datetime | None = None) -> dict[str, Any]:
    """A round trip (a trade) as both trades routes send it, a run's and the live account's;
    an open one without a mark lasts to ``as_of`` when given."""
    mark = trip.mark
    duration = trip.duration(as_of)
    return {
        "symbol": trip.symbol,
        "direction": trip.direction,
        "status": "open" if trip.is_open else "closed",
        "entry_time": iso(trip.entry_time),
        "entry_price": finite(trip.entry_price),
        "exit_time": iso(trip.exit_time),
        "exit_price": finite(trip.exit_price),
        "quantity": trip.quantity,
        "closed_quantity": trip.closed_quantity,
        "pnl": finite(trip.pnl),
        "pnl_pct": finite(trip.pnl_pct),
        "realized_pnl": finite(trip.realized_pnl),
        "unrealized_pnl": finite(trip.unrealized_pnl),
        "commission": finite(trip.commission),
        "duration_s": None if duration is None else duration.total_seconds(),
        "mark_time": iso(mark.time) if mark else None,
        "mark_price": finite(mark.price) if mark else None,
    }


async def approval_of(db: Database, client_order_id: str | None) -> dict[str, Any] | None:
    """The approval an order waits for, as JSON; None when there is none."""
    if client_order_id is None:
        return None
    query = select(Approval).where(Approval.client_order_id == client_order_id)
    async with db.session() as session:
        row = await session.scalar(query.order_by(Approval.id.desc()).limit(1))
    return None if row is None else approval_dict(row)


def approval_dict(row: Approval) -> dict[str, Any]:
    """An approval as JSON."""
    return {
        "id": row.id,
        "account": row.account,
        "run_id": row.run_id,
        "client_order_id": row.client_order_id,
        "time": iso(row.time),
        "symbol": row.symbol,
        "quantity": row.quantity,
        "reference_price": row.reference_price,
        "rationale": row.rationale,
        "status": row.status,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "decided_at": iso(row.decided_at),
        "decided_by": row.decided_by,
    }


async def decisions(
    db: Database, run_id: str, symbol: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of a run's decisions, newest first, with their outcomes; a hold that kept the
    position has no target (null) and the action ``hold``."""
    d, o = Decision.__table__, DecisionOutcome.__table__
    where = [d.c.run_id == run_id] + ([d.c.symbol == symbol] if symbol else [])
    query = (
        select(d, o.c.horizon, o.c.realized_return, o.c.hit)
        .select_from(d.outerjoin(o, o.c.decision_id == d.c.id))
        .where(*where)
        .order_by(d.c.id.desc())
    )
    counted = select(func.count()).select_from(d).where(*where)
    async with db.session() as session:
        total = int(await session.scalar(counted) or 0)
        rows = (await session.execute(query.limit(limit).offset(offset))).all()
        run = (
            await session.execute(select(Run.params, Run.status).where(Run.id == run_id))
        ).first()
        statuses = await _outcome_statuses(
            session, run_id, rows, run is not None and run.status == "running"
        )
    params = None if run is None else run.params
    items = [{**_decision_dict(r, params), "outcome_status": statuses[r.id]} for r in rows]
    return page(items, total, limit, offset)


async def _outcome_statuses(
    session: AsyncSession, run_id: str, rows: Sequence[Any], run_open: bool
) -> dict[int, dict[str, Any]]:
    """Each decision's outcome in words (``ffe.runs.outcome_status``): a waiting one is
    placed against the run's bars journaled after it."""
    from ffe.runs import outcome_status as status

    e = EquityPoint.__table__
    step: timedelta | None = None
    found: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.horizon is not None:
            found[row.id] = status.resolved(
                row.horizon, finite(row.realized_return), row.hit
            ).as_dict()
            continue
        horizon = status.scored_horizon(row.votes, row.confidence)
        if horizon is None:
            found[row.id] = status.unscored().as_dict()
            continue
        if step is None:
            last = (
                await session.scalars(
                    select(e.c.time).where(e.c.run_id == run_id).order_by(e.c.time.desc()).limit(2)
                )
            ).all()
            step = last[0] - last[1] if len(last) == 2 else timedelta(0)
        later = select(e.c.time).where(e.c.run_id == run_id, e.c.time > row.time)
        times = (await session.scalars(later.order_by(e.c.time).limit(horizon))).all()
        waits = status.waiting(horizon, row.time, times, step or None, run_open)
        found[row.id] = waits.as_dict()
    return found


def _decision_dict(row: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    target = journaled_target(row.target, row.votes, params)
    return {
        "id": row.id,
        "run_id": row.run_id,
        "time": iso(row.time),
        "symbol": row.symbol,
        "target": finite(target),
        "action": action_of(target),
        "confidence": finite(row.confidence),
        "rationale": row.rationale,
        "votes": row.votes,
        "outcome": None if row.horizon is None else _outcome(row),
    }


def _outcome(row: Any) -> dict[str, Any]:
    return {"horizon": row.horizon, "realized_return": finite(row.realized_return), "hit": row.hit}
