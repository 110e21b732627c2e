"""The ledger: cash, positions, realized P&L and closed trades, fed by fills.

Quantities are signed (positive long, negative short). Lots are matched first in, first out:
a fill against the open direction closes the oldest lots, and what is left of it opens a new
lot in the other direction. Money is float64: exact enough for backtests (errors of order
1e-12 of equity); the live journal keeps exact decimals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ffe.domain.market import FloatArray


@dataclass(slots=True)
class Lot:
    """An open piece of a position: what was bought (or sold short), when and at what price."""

    bar: int
    quantity: float
    price: float
    commission: float  # entry commission not yet attributed to a closed trade


@dataclass(frozen=True, slots=True)
class ClosedTrade:
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
    """Cash and positions of one account over a run."""

    def __init__(self, n_symbols: int, cash: float) -> None:
        self.initial_cash = cash
        self.cash = cash
        self.positions: FloatArray = np.zeros(n_symbols)
        self.commissions = 0.0
        self.realized_pnl = 0.0
        self.lots: list[deque[Lot]] = [deque() for _ in range(n_symbols)]
        self.trades: list[ClosedTrade] = []
        self._changes: list[tuple[int, int, float, float]] = []  # bar, symbol, qty, cash flow

    def equity(self, prices: FloatArray) -> float:
        """Cash plus positions marked at ``prices`` (one price per symbol, no NaN)."""
        return self.cash + float(self.positions @ prices)

    def apply_fill(self, bar: int, symbol: int, quantity: float, price: float, fee: float) -> None:
        """Book a fill: move cash, update the position, close or open lots."""
        flow = -quantity * price - fee
        self.cash += flow
        self.commissions += fee
        self.positions[symbol] += quantity
        if abs(self.positions[symbol]) < 1e-12:
            self.positions[symbol] = 0.0
        self._changes.append((bar, symbol, quantity, flow))
        self._match_lots(bar, symbol, quantity, price, fee)

    def _match_lots(self, bar: int, symbol: int, quantity: float, price: float, fee: float) -> None:
        lots = self.lots[symbol]
        remaining = quantity
        fee_per_unit = fee / abs(quantity) if quantity else 0.0
        while lots and remaining and (lots[0].quantity > 0) != (remaining > 0):
            lot = lots[0]
            closed = -remaining if abs(remaining) < abs(lot.quantity) else lot.quantity
            share = closed / lot.quantity
            entry_fee = lot.commission * share
            exit_fee = abs(closed) * fee_per_unit
            pnl = closed * (price - lot.price) - entry_fee - exit_fee
            self.realized_pnl += pnl
            self.trades.append(
                ClosedTrade(
                    symbol, lot.bar, bar, lot.price, price, closed, pnl, entry_fee + exit_fee
                )
            )
            if closed == lot.quantity:
                lots.popleft()
            else:
                lot.quantity -= closed
                lot.commission -= entry_fee
            remaining += closed
        if remaining:
            lots.append(Lot(bar, remaining, price, abs(remaining) * fee_per_unit))

    def position_path(self, n_bars: int) -> FloatArray:
        """Positions held at the close of every bar, shape (n_bars, n_symbols)."""
        delta = np.zeros((n_bars, len(self.positions)))
        if self._changes:
            bars, symbols, quantities, _ = zip(*self._changes, strict=True)
            np.add.at(delta, (np.asarray(bars), np.asarray(symbols)), np.asarray(quantities))
        path = np.cumsum(delta, axis=0)
        path[np.abs(path) < 1e-12] = 0.0
        return path

    def cash_path(self, n_bars: int) -> FloatArray:
        """Cash at the close of every bar."""
        delta = np.zeros(n_bars)
        if self._changes:
            bars, _, _, flows = zip(*self._changes, strict=True)
            np.add.at(delta, np.asarray(bars), np.asarray(flows))
        return self.initial_cash + np.cumsum(delta)
