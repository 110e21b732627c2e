"""The account's answers as the spec describes them: positions, orders, fills, round trips and
the equity curve with its benchmark; split from ``ffe.api.schemas`` (whose ``Answer`` and
``Page`` they extend) along that seam."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ffe.api.schemas import Answer, Page


class Position(Answer):
    """An open position, marked at the last price known."""

    symbol: str
    quantity: float = Field(description="signed: negative for a short")
    average_price: float | None
    mark_price: float | None
    market_value: float | None
    unrealized_pnl: float | None


class Portfolio(Answer):
    """Cash, equity, P&L and drawdown of an account, and its open positions."""

    account: str
    run_id: str | None
    as_of: datetime | None
    cash: float | None
    equity: float | None
    positions_value: float | None
    pnl: float | None
    return_pct: float | None
    drawdown: float | None = Field(description="from the peak, as a negative fraction")
    max_drawdown: float | None
    positions: list[Position]


class Positions(Answer):
    """The account's open positions."""

    items: list[Position]
    as_of: datetime | None


class Order(Answer):
    """An order sent (or to be sent) to a broker."""

    id: int
    run_id: str
    client_order_id: str
    time: datetime
    symbol: str
    quantity: float = Field(description="signed: positive buys")
    order_type: str
    status: str
    filled_quantity: float


class OrderPage(Page):
    """A page of orders, newest first."""

    items: list[Order]


class Fill(Answer):
    """A fill of an order."""

    id: int
    run_id: str
    time: datetime
    symbol: str
    quantity: float = Field(description="signed: positive buys")
    price: float
    commission: float


class FillPage(Page):
    """A page of fills, newest first."""

    items: list[Fill]


class RoundTrip(Answer):
    """A trade: a position from flat to flat, or still open and valued at ``mark_price``
    (``ffe.portfolio.trades``). The same for a recorded run and the live account."""

    symbol: str
    direction: Literal["long", "short"]
    status: Literal["open", "closed"]
    entry_time: datetime
    entry_price: float = Field(description="the average of the fills that opened or added")
    exit_time: datetime | None = Field(description="the fill that made it flat; null while open")
    exit_price: float | None = Field(
        description="the average of the fills that closed it (or part of it, while open)"
    )
    quantity: float = Field(description="all it bought, or sold short; unsigned")
    closed_quantity: float = Field(description="how much of quantity was closed")
    pnl: float | None = Field(
        description="net of every commission; realised plus unrealised while open, null "
        "while open without a mark"
    )
    pnl_pct: float | None = Field(description="pnl over entry_price times quantity")
    realized_pnl: float | None = Field(description="of the part closed, net of its commissions")
    unrealized_pnl: float | None = Field(description="of the part open, at mark_price")
    commission: float | None = Field(description="all it paid")
    duration_s: float | None = Field(description="entry to exit, or to mark_time while open")
    mark_time: datetime | None
    mark_price: float | None


class Trade(RoundTrip):
    """A round trip of the live account, with the names this route used before it answered
    the same round trips as a run's trades."""

    side: Literal["long", "short"] = Field(description="direction")
    fees: float | None = Field(description="commission")
    return_pct: float | None = Field(description="pnl_pct")


class Trades(Answer):
    """The account's round trips, newest first (by exit, or entry while open);
    ``realized_pnl`` plus ``unrealized_pnl`` is the account's P&L."""

    run_id: str | None
    as_of: datetime | None
    items: list[Trade] = Field(description="the newest `limit`")
    total: int = Field(description="all of them, open and closed")
    closed: int
    open: int
    wins: int
    realized_pnl: float | None
    unrealized_pnl: float | None


class EquityPoint(Answer):
    """The account's value at one time, and its drawdown from the peak before it."""

    time: datetime
    equity: float | None
    cash: float | None
    drawdown: float | None
    benchmark: float | None = Field(
        None, description="buy and hold's value at this time (see the curve's benchmark)"
    )


class Benchmark(Answer):
    """What an equity curve is set against: buy and hold of the run's symbols."""

    label: str = Field(description="the legend's name, e.g. 'Buy & hold SP500'")
    note: str = Field(description="how it is made (cash, costs), or why it is not drawn")
    drawn: bool = Field(description="whether the points carry its values")


class EquityCurve(Answer):
    """A run's equity curve, thinned evenly (keeping its deepest drawdown), with buy and
    hold of the same symbols from the same cash, paying the same costs."""

    run_id: str | None = Field(description="null: the account has no run yet")
    points: list[EquityPoint]
    benchmark: Benchmark | None = Field(None, description="null: no run, or no points yet")
