"""The live account's round trips for the API, from the journal's fills
(``ffe.portfolio.trades`` does the matching)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from ffe.api.queries import finite, iso
from ffe.portfolio.trades import RoundTrip, TradeFill, round_trips
from ffe.store.database import Database
from ffe.store.models import Fill


async def live_trades(
    db: Database,
    run: str | None,
    symbol: str | None,
    marks: dict[str, float],
    as_of: datetime | None,
    limit: int,
) -> dict[str, Any]:
    """The run's round trips (``ffe.portfolio.trades``, first in first out) from its fills:
    closed ones with their P&L, open ones marked at ``marks`` (unrealised); the newest
    ``limit`` of them, and the counts and P&L of all."""
    query = select(Fill.symbol, Fill.quantity, Fill.price, Fill.commission, Fill.time)
    query = query.where(Fill.run_id == (run or "")).order_by(Fill.id)
    if symbol:
        query = query.where(Fill.symbol == symbol)
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    fills = [TradeFill.signed(*row) for row in rows if row.quantity and row.price > 0]
    found = round_trips(fills, marks)
    newest = sorted(found, key=_trade_order, reverse=True)[:limit]
    items = [_trade_dict(t, as_of) for t in newest]
    closed = [t.pnl for t in found if not t.open and t.pnl is not None]
    still = [t.pnl for t in found if t.open]
    return {
        "run_id": run,
        "as_of": iso(as_of),
        "items": items,
        "total": len(found),
        "closed": len(closed),
        "open": len(still),
        "wins": sum(1 for pnl in closed if pnl > 0),
        "realized_pnl": finite(sum(closed)),
        "unrealized_pnl": None if None in still else finite(sum(p or 0.0 for p in still)),
    }


def _trade_order(trade: RoundTrip) -> tuple[datetime, bool]:
    """When a trade last changed; on a tie (a fill that closes one trade and opens the next)
    the trade it opened is the newer."""
    return trade.exit_time or trade.entry_time, trade.open


def _trade_dict(trade: RoundTrip, as_of: datetime | None) -> dict[str, Any]:
    duration = trade.duration(as_of)
    return {
        "symbol": trade.symbol,
        "side": trade.side,
        "quantity": trade.quantity,
        "status": "open" if trade.open else "closed",
        "entry_time": iso(trade.entry_time),
        "entry_price": trade.entry_price,
        "exit_time": iso(trade.exit_time),
        "exit_price": finite(trade.exit_price),
        "fees": finite(trade.fees),
        "pnl": finite(trade.pnl),
        "return_pct": finite(trade.return_pct),
        "duration_s": None if duration is None else duration.total_seconds(),
    }
