"""The live account's trades for the API, from the journal's fills: the same round trips, of
the same shape, as a recorded run's (``ffe.portfolio.trades`` derives both)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ffe.api.queries import finite, iso, round_trip_dict
from ffe.portfolio.trades import DUST, Execution, Mark, RoundTrip, round_trips
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
    """The run's round trips from its fills: closed ones with their P&L, open ones valued at
    ``marks`` (their price at ``as_of``); the newest ``limit`` of them, and the counts and
    P&L of all. ``realized_pnl`` adds up what every round trip closed (the partial exits of
    an open one too) and ``unrealized_pnl`` what is still open, so the two add up to the
    account's P&L."""
    query = select(Fill.time, Fill.symbol, Fill.quantity, Fill.price, Fill.commission)
    query = query.where(Fill.run_id == (run or "")).order_by(Fill.id)
    if symbol:
        query = query.where(Fill.symbol == symbol)
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    # a row the broker journaled without a quantity or a price is no fill: skipped, as before
    fills = [Execution(*row) for row in rows if _is_fill(row.quantity, row.price)]
    found = round_trips(fills, {s: Mark(as_of, price) for s, price in marks.items()})
    newest = sorted(found, key=_trade_order, reverse=True)[:limit]
    closed = [t.realized_pnl for t in found if not t.is_open]
    still = [t.unrealized_pnl for t in found if t.is_open]
    return {
        "run_id": run,
        "as_of": iso(as_of),
        "items": [_trade_dict(t, as_of) for t in newest],
        "total": len(found),
        "closed": len(closed),
        "open": len(still),
        "wins": sum(1 for pnl in closed if pnl > 0),
        "realized_pnl": finite(sum(t.realized_pnl for t in found)),
        "unrealized_pnl": None if None in still else finite(sum(p or 0.0 for p in still)),
    }


def _is_fill(quantity: float | None, price: float | None) -> bool:
    return (
        quantity is not None
        and abs(quantity) > DUST
        and price is not None
        and 0 <= price < math.inf
    )


def _trade_order(trade: RoundTrip) -> tuple[datetime, bool]:
    """When a trade last changed; on a tie (a fill that closes one trade and opens the next)
    the trade it opened is the newer."""
    return trade.exit_time or trade.entry_time, trade.is_open


def _trade_dict(trade: RoundTrip, as_of: datetime | None) -> dict[str, Any]:
    found = round_trip_dict(trade, as_of)
    # the names this route answered before it shared the run route's round trips
    legacy = {"side": found["direction"], "fees": found["commission"]}
    return found | legacy | {"return_pct": found["pnl_pct"]}
