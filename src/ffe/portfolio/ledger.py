"""The ledger: cash, positions, realized P&L and closed trades, fed by fills.

Quantities are signed (positive long, negative short). Lots are matched first in, first out:
a fill against the open direction closes the oldest lots, and what is left of it opens a new
lot in the other direction. Money is float64: exact enough for backtests (errors of order
1e-12 of equity); the live journal keeps exact decimals.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from ffe.domain.market import FloatArray

_ZERO = 1e-12


@dataclass(slots=True)
class Lot:
    """An open piece of a position: what was bought (or sold short), when and at what price."""

    bar: int
    quantity: float
    price: float
    commission: float  # entry commission not yet attributed to a closed trade


class FillRecord(Protocol):
    """What the ledger needs to know of a fill, in bar coordinates."""

    @property
    def bar(self) -> int: ...
    @property
    def symbol(self) -> int: ...
    @property
    def quantity(self) -> float: ...
    @property
    def price(self) -> float: ...
    @property
    def commission(self) -> float: ...


class ClosedTrade(NamedTuple):
    """A closed round trip in bar coordinates."""

    symbol: int
    entry_bar: int
    exit_bar: int
    entry_price: float
    exit_price: float
    quantity: float
    pnl: float
    commission: float


class Ledger:
    """Cash and positions of one account over a run.

    ``held`` maps a symbol's position (its column) to its quantity, for open positions only,
    so marking to market costs as much as the number of positions, not of symbols.
    """

    def __init__(self, n_symbols: int, cash: float) -> None:
        self.n_symbols = n_symbols
        self.initial_cash = cash
        self.cash = cash
        self.held: dict[int, float] = {}
        self.commissions = 0.0
        self.realized_pnl = 0.0
        self.lots: list[deque[Lot]] = [deque() for _ in range(n_symbols)]
        self.trades: list[ClosedTrade] = []
        self._changes: list[tuple[int, int, float, float]] = []  # bar, symbol, qty, cash flow

    def position(self, symbol: int) -> float:
        return self.held.get(symbol, 0.0)

    @property
    def positions(self) -> FloatArray:
        """Current positions as an array, one entry per symbol."""
        array = np.zeros(self.n_symbols)
        for symbol, quantity in self.held.items():
            array[symbol] = quantity
        return array

    def equity(self, prices: Sequence[float]) -> float:
        """Cash plus open positions marked at ``prices`` (indexed by symbol)."""
        total = self.cash
        for symbol, quantity in self.held.items():
            total += quantity * prices[symbol]
        return total

    def marked(self, marks: FloatArray, bar: int) -> tuple[float, float]:
        """Equity and gross exposure at row ``bar`` of ``marks`` (bars × symbols, no NaN),
        in one pass over the open positions."""
        equity, gross = self.cash, 0.0
        price = marks.item
        for symbol, quantity in self.held.items():
            value = quantity * price(bar, symbol)
            equity += value
            gross += abs(value)
        return equity, gross

    def gross_exposure(self, prices: Sequence[float]) -> float:
        """Sum of the absolute values of open positions at ``prices``."""
        total = 0.0
        for symbol, quantity in self.held.items():
            total += abs(quantity) * prices[symbol]
        return total

    def book(self, fill: FillRecord) -> None:
        """Book a fill record (anything with bar, symbol, quantity, price, commission)."""
        self.apply_fill(fill.bar, fill.symbol, fill.quantity, fill.price, fill.commission)

    def apply_fill(self, bar: int, symbol: int, quantity: float, price: float, fee: float) -> None:
        """Book a fill: move cash, update the position, close or open lots."""
        flow = -quantity * price - fee
        self.cash += flow
        self.commissions += fee
        after = self.held.get(symbol, 0.0) + quantity
        if abs(after) < _ZERO:
            self.held.pop(symbol, None)
        else:
            self.held[symbol] = after
        self._changes.append((bar, symbol, quantity, flow))
        self._match_lots(bar, symbol, quantity, price, fee)

    def _match_lots(self, bar: int, symbol: int, quantity: float, price: float, fee: float) -> None:
        lots = self.lots[symbol]
        remaining = quantity
        fee_per_unit = fee / abs(quantity) if quantity else 0.0
        while lots and abs(remaining) > _ZERO and (lots[0].quantity > 0) != (remaining > 0):
            lot = lots[0]
            # Within rounding of the lot's size counts as closing it: fractional sizes such as
            # 0.1 + 0.2 - 0.3 must not leave a dust lot behind.
            partial = abs(remaining) < abs(lot.quantity) * (1.0 - 1e-9)
            closed = -remaining if partial else lot.quantity
            self._close(symbol, bar, lot, closed, price, abs(closed) * fee_per_unit)
            if partial:
                lot.quantity -= closed
            else:
                lots.popleft()
            remaining += closed
        if abs(remaining) > _ZERO:
            lots.append(Lot(bar, remaining, price, abs(remaining) * fee_per_unit))

    def _close(
        self, symbol: int, bar: int, lot: Lot, closed: float, price: float, exit_fee: float
    ) -> None:
        """Record ``closed`` units of ``lot`` as a closed trade at ``price``."""
        entry_fee = lot.commission * (closed / lot.quantity)
        lot.commission -= entry_fee
        pnl = closed * (price - lot.price) - entry_fee - exit_fee
        self.realized_pnl += pnl
        self.trades.append(
            ClosedTrade(symbol, lot.bar, bar, lot.price, price, closed, pnl, entry_fee + exit_fee)
        )

    def position_path(self, n_bars: int) -> FloatArray:
        """Positions held at the close of every bar, shape (n_bars, n_symbols)."""
        width = self.n_symbols
        if not self._changes:
            return np.zeros((n_bars, width))
        bars, symbols, quantities, _ = (np.asarray(c) for c in zip(*self._changes, strict=True))
        flat = np.bincount(bars * width + symbols, weights=quantities, minlength=n_bars * width)
        path: FloatArray = np.cumsum(flat.reshape(n_bars, width), axis=0, dtype=np.float64)
        path[np.abs(path) < _ZERO] = 0.0
        return path

    def cash_path(self, n_bars: int) -> FloatArray:
        """Cash at the close of every bar."""
        if not self._changes:
            return np.full(n_bars, self.initial_cash)
        bars, _, _, flows = (np.asarray(c) for c in zip(*self._changes, strict=True))
        flow = np.bincount(bars, weights=flows, minlength=n_bars)
        cash: FloatArray = self.initial_cash + np.cumsum(flow, dtype=np.float64)
        return cash
