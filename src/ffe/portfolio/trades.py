"""Trades from fills: what a trader reads as "the trades", for a backtest and the live
account alike (one definition, so the backtest page and the overview show the same thing).

A trade is a round trip: it runs from the fill that opens a position in a symbol (from flat)
to the fill that makes it flat again. Fills in between add to it or close part of it; a fill
that goes through zero (long to short) closes the round trip and opens the next with what is
left. Its entry price is the average of the fills that opened or added to it, its exit price
the average of those that closed it, and its P&L is net of every commission paid on it.

Why flat to flat rather than one trade per lot: a trader thinks of "the trade" as the
position they took and left, not as the lots the books match (a partial exit, scaling in,
would otherwise split one decision into several rows whose sizes and prices nobody chose).
It is also what trading tools show (FreqUI's trades, a broker's round trips). The P&L loses
nothing: within a round trip the lots are matched first in, first out, as the ledger
matches them, so a round trip's realised P&L is the sum of the ledger's closed trades over
it. A round trip still open is valued at its symbol's mark (unrealised), when known.

Pure: no ledger, no bars, no store. ``ffe.service.runs`` (a recorded run's trades) and
``ffe.api.trades`` (the live account's) both derive their trades here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ffe.domain.orders import Trade

DUST = 1e-12  # as the ledger: a position smaller than this is none
CLOSE_TOLERANCE = 1e-9  # a fill within this (relative) of a lot's size closes it


@dataclass(frozen=True, slots=True)
class Execution:
    """A fill as the journal keeps it: signed quantity (positive buys), price, commission.
    ValueError for one that is not a fill (no quantity, a price negative or not a number)."""

    time: datetime
    symbol: str
    quantity: float
    price: float
    commission: float = 0.0

    def __post_init__(self) -> None:
        # A price of 0 is a fill: a binary contract that settled against the position.
        if not abs(self.quantity) > DUST or not 0 <= self.price < math.inf:
            raise ValueError(
                f"not a fill: {self.symbol} {self.quantity} at {self.price} "
                f"({self.time.isoformat()}); a fill has a quantity and a price of 0 or more"
            )
        if not math.isfinite(self.commission):  # negative is a rebate, still a number
            raise ValueError(
                f"not a fill: {self.symbol} at {self.time.isoformat()} paid a commission of "
                f"{self.commission}; a commission is a number"
            )


@dataclass(frozen=True, slots=True)
class Mark:
    """A symbol's last known price, to value what is still open."""

    time: datetime | None  # None: when is not known (the round trip then has no end yet)
    price: float


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One position from flat to flat (or still open at the end)."""

    symbol: str
    direction: Literal["long", "short"]
    entry_time: datetime
    entry_price: float  # the average price of the fills that opened or added to it
    quantity: float  # everything it bought (long) or sold short, unsigned
    exit_time: datetime | None  # None while open
    exit_price: float | None  # the average price of the fills that closed part or all of it
    closed_quantity: float
    realized_pnl: float  # net of the commissions of the quantity closed
    unrealized_pnl: float | None  # what is open, at the mark, net of its entry commission
    commission: float
    mark: Mark | None = None  # the price the open part is valued at

    @property
    def is_open(self) -> bool:
        return self.exit_time is None

    @property
    def pnl(self) -> float | None:
        """Profit net of commissions: realized, plus unrealized while open (None while open
        without a mark)."""
        if not self.is_open:
            return self.realized_pnl
        return None if self.unrealized_pnl is None else self.realized_pnl + self.unrealized_pnl

    @property
    def pnl_pct(self) -> float | None:
        """``pnl`` as a fraction of what was paid to enter (entry price times quantity)."""
        cost = self.entry_price * self.quantity
        pnl = self.pnl
        return None if pnl is None or cost <= 0 else pnl / cost

    def duration(self, as_of: datetime | None = None) -> timedelta | None:
        """Entry to exit; while open, entry to the mark's time, else to ``as_of`` (None
        without either)."""
        end = self.exit_time or (self.mark.time if self.mark else None) or as_of
        return None if end is None else end - self.entry_time

    @property
    def duration_s(self) -> float | None:
        """``duration()`` in seconds."""
        length = self.duration()
        return None if length is None else length.total_seconds()


@dataclass(slots=True)
class _Lot:
    quantity: float  # signed
    price: float
    commission: float  # entry commission not yet attributed to a closed part


@dataclass(slots=True)
class _Open:
    """A round trip being built."""

    symbol: str
    sign: float
    entry_time: datetime
    lots: deque[_Lot] = field(default_factory=deque)
    entered: float = 0.0
    entered_value: float = 0.0
    exited: float = 0.0
    exited_value: float = 0.0
    realized: float = 0.0
    commission: float = 0.0

    def add(self, quantity: float, price: float, fee: float) -> None:
        self.lots.append(_Lot(quantity, price, fee))
        self.entered += abs(quantity)
        self.entered_value += abs(quantity) * price
        self.commission += fee

    def close(self, quantity: float, price: float, fee_per_unit: float) -> float:
        """Close the oldest lots against ``quantity`` (opposite sign); return what is left."""
        remaining = quantity
        while self.lots and abs(remaining) > DUST:
            lot = self.lots[0]
            partial = abs(remaining) < abs(lot.quantity) * (1.0 - CLOSE_TOLERANCE)
            closed = -remaining if partial else lot.quantity
            entry_fee = lot.commission * (closed / lot.quantity)
            exit_fee = abs(closed) * fee_per_unit
            self.realized += closed * (price - lot.price) - entry_fee - exit_fee
            self.commission += exit_fee
            self.exited += abs(closed)
            self.exited_value += abs(closed) * price
            if partial:
                lot.quantity -= closed
                lot.commission -= entry_fee
            else:
                self.lots.popleft()
            remaining += closed
        return remaining

    def finish(self, exit_time: datetime | None, mark: Mark | None) -> RoundTrip:
        unrealized = None
        if exit_time is None and mark is not None:
            unrealized = sum(lot.quantity * (mark.price - lot.price) for lot in self.lots)
            unrealized -= sum(lot.commission for lot in self.lots)
        return RoundTrip(
            symbol=self.symbol,
            direction="long" if self.sign > 0 else "short",
            entry_time=self.entry_time,
            entry_price=self.entered_value / self.entered,
            quantity=self.entered,
            exit_time=exit_time,
            exit_price=self.exited_value / self.exited if self.exited else None,
            closed_quantity=self.exited,
            realized_pnl=self.realized,
            unrealized_pnl=unrealized,
            commission=self.commission,
            mark=mark if exit_time is None else None,
        )


def round_trips(
    executions: Iterable[Execution], marks: Mapping[str, Mark] | None = None
) -> list[RoundTrip]:
    """The round trips of ``executions`` (in the order they happened), by entry time; those
    still open valued at ``marks`` (by symbol)."""
    marks = marks or {}
    building: dict[str, _Open] = {}
    done: list[RoundTrip] = []
    for execution in executions:
        done.extend(_apply(building, execution))
    done.extend(trip.finish(None, marks.get(symbol)) for symbol, trip in building.items())
    return sorted(done, key=lambda t: t.entry_time)


def _apply(building: dict[str, _Open], execution: Execution) -> list[RoundTrip]:
    """Book one fill; return the round trip it closed, if it closed one."""
    quantity, symbol = execution.quantity, execution.symbol
    fee_per_unit = execution.commission / abs(quantity)
    closed = []
    trip = building.get(symbol)
    if trip is not None and (trip.sign > 0) != (quantity > 0):
        quantity = trip.close(quantity, execution.price, fee_per_unit)
        if not trip.lots:
            closed.append(trip.finish(execution.time, None))
            del building[symbol]
            trip = None
    if abs(quantity) > DUST:
        if trip is None:
            trip = building[symbol] = _Open(symbol, 1.0 if quantity > 0 else -1.0, execution.time)
        trip.add(quantity, execution.price, abs(quantity) * fee_per_unit)
    return closed


def executions_of_trades(trades: Iterable[Trade]) -> list[Execution]:
    """Fills that reproduce closed lot trades (the journal's ``trades`` of a backtest recorded
    before its fills were): each lot's entry, and its exit with the lot's commission. Their
    round trips have the trades' profit; what was still open is not in them."""
    pieces: list[tuple[datetime, int, Execution]] = []
    for trade in trades:
        entry = Execution(trade.entry_time, trade.symbol, trade.quantity, trade.entry_price)
        exit_ = Execution(
            trade.exit_time, trade.symbol, -trade.quantity, trade.exit_price, trade.commission
        )
        # At one time, exits of earlier lots come first (a flip), then entries, then the
        # exits of lots entered at that same time.
        pieces.append((trade.entry_time, 1, entry))
        pieces.append((trade.exit_time, 0 if trade.exit_time > trade.entry_time else 2, exit_))
    pieces.sort(key=lambda p: (p[0], p[1]))
    return [execution for _, _, execution in pieces]
