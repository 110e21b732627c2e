"""Round trips from a list of fills: each entry matched first in, first out against the exits
that close it, and what is still open marked at a price.

Pure and small, for anything that has fills and wants trades (the live journal's, a
backtest's): no ledger, no bars, no store. A fill that closes part of a lot splits the lot;
one that crosses zero closes every lot and opens the rest the other way. Fees go with the
quantity they paid for: an entry's fee is shared among the trades its lot ends up in, an
exit's among the lots it closes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Side = Literal["buy", "sell"]

# A quantity within this of zero (relative to the fill it is part of) is nothing left.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class TradeFill:
    """One execution: ``quantity`` is positive, ``side`` says which way."""

    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    time: datetime

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"a fill's side is 'buy' or 'sell', not {self.side!r}")
        if not self.quantity > 0:
            raise ValueError(f"a fill's quantity must be positive, got {self.quantity!r}")
        if not self.price > 0:
            raise ValueError(f"a fill's price must be positive, got {self.price!r}")

    @classmethod
    def signed(
        cls, symbol: str, quantity: float, price: float, fee: float, time: datetime
    ) -> TradeFill:
        """A fill from a signed quantity (positive bought, negative sold), as journals keep it."""
        side: Side = "buy" if quantity > 0 else "sell"
        return cls(symbol, side, abs(quantity), price, fee, time)

    @property
    def direction(self) -> int:
        return 1 if self.side == "buy" else -1


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A trade: an entry and, once closed, its exit. ``pnl`` is net of both fees; for an open
    trade it is unrealised at ``exit_price`` (the mark), or None without a mark."""

    symbol: str
    side: Literal["long", "short"]
    quantity: float
    entry_time: datetime
    entry_price: float
    exit_time: datetime | None  # None while open
    exit_price: float | None  # the exit fill's price, or the mark of an open trade
    fees: float
    pnl: float | None
    open: bool

    @property
    def return_pct(self) -> float | None:
        """``pnl`` over the money the entry put at stake."""
        if self.pnl is None:
            return None
        return self.pnl / (self.quantity * self.entry_price)

    def duration(self, as_of: datetime | None = None) -> timedelta | None:
        """Entry to exit; for an open trade entry to ``as_of`` (None without one)."""
        end = self.exit_time if self.exit_time is not None else as_of
        return None if end is None else end - self.entry_time


@dataclass(slots=True)
class _Lot:
    time: datetime
    quantity: float  # left open, positive
    price: float
    fee: float  # entry fee of what is left open


def round_trips(
    fills: Iterable[TradeFill], marks: Mapping[str, float] | None = None
) -> list[RoundTrip]:
    """The trades the fills make, in the order they closed, then the open ones in the order
    they opened; open ones are marked at ``marks[symbol]`` when given. Fills are taken in the
    order given (sort them by time first)."""
    books: dict[str, tuple[int, deque[_Lot]]] = {}
    closed: list[RoundTrip] = []
    for fill in fills:
        direction, lots = books.get(fill.symbol, (fill.direction, deque()))
        if lots and direction != fill.direction:
            left = _close(fill, direction, lots, closed)
        else:
            left = fill.quantity
        if left > _EPS * fill.quantity:
            fee = fill.fee * left / fill.quantity
            lots.append(_Lot(fill.time, left, fill.price, fee))
            direction = fill.direction
        books[fill.symbol] = (direction, lots)
    marks = marks or {}
    still = [
        _open_trade(symbol, direction, lot, marks.get(symbol))
        for symbol, (direction, lots) in books.items()
        for lot in lots
    ]
    return closed + sorted(still, key=lambda trade: trade.entry_time)


def _close(fill: TradeFill, direction: int, lots: deque[_Lot], closed: list[RoundTrip]) -> float:
    """Close the oldest ``lots`` (held ``direction``) with ``fill``; what is left of it."""
    left = fill.quantity
    while lots and left > _EPS * fill.quantity:
        lot = lots[0]
        matched = min(left, lot.quantity)
        whole = matched >= lot.quantity * (1 - _EPS)
        entry_fee = lot.fee if whole else lot.fee * matched / lot.quantity
        exit_fee = fill.fee * matched / fill.quantity
        gross = direction * matched * (fill.price - lot.price)
        fees = entry_fee + exit_fee
        closed.append(
            RoundTrip(
                fill.symbol,
                "long" if direction > 0 else "short",
                matched,
                lot.time,
                lot.price,
                fill.time,
                fill.price,
                fees,
                gross - fees,
                open=False,
            )
        )
        left -= matched
        if whole:
            lots.popleft()
        else:
            lot.quantity -= matched
            lot.fee -= entry_fee
    return max(left, 0.0)


def _open_trade(symbol: str, direction: int, lot: _Lot, mark: float | None) -> RoundTrip:
    pnl = None if mark is None else direction * lot.quantity * (mark - lot.price) - lot.fee
    return RoundTrip(
        symbol,
        "long" if direction > 0 else "short",
        lot.quantity,
        lot.time,
        lot.price,
        None,
        mark,
        lot.fee,
        pnl,
        open=True,
    )
