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
import numpy.typing as npt

from ffe.domain.market import FloatArray

# A position or lot smaller than DUST is none; a fill within CLOSE_TOLERANCE (relative) of a
# lot's size closes it. Public for the sweep's batch kernel, which books as this ledger does.
DUST = 1e-12
CLOSE_TOLERANCE = 1e-9
_IntArray = npt.NDArray[np.intp]
_Columns = tuple[_IntArray, _IntArray, _IntArray, FloatArray, FloatArray]


@dataclass(slots=True, init=False)
class Lot:
    """An open piece of a position: what was bought (or sold short), when and at what price."""

    bar: int
    quantity: float
    price: float
    commission: float  # entry commission not yet attributed to a closed trade

    # Written out, not generated: mypyc compiles this one (a dataclass's generated __init__
    # stays interpreted in the compiled build), and a lot is made for nearly every fill.
    def __init__(self, bar: int, quantity: float, price: float, commission: float) -> None:
        self.bar = bar
        self.quantity = quantity
        self.price = price
        self.commission = commission

    def __reduce__(self) -> tuple[type[Lot], tuple[int, float, float, float]]:
        # Pickled through __init__, which a class compiled with mypyc needs.
        return type(self), (self.bar, self.quantity, self.price, self.commission)


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
        self.initial_cash = float(cash)  # an int given stays a float, as a compiled build has it
        self.cash = float(cash)
        self.held: dict[int, float] = {}
        self.commissions = 0.0
        self.realized_pnl = 0.0
        self.lots: list[deque[Lot]] = [deque() for _ in range(n_symbols)]
        self.trades: list[ClosedTrade] = []
        # bar, symbol, quantity, cash flow of every fill, flat: no tuple per fill for the
        # garbage collector to count (a backtest would otherwise trigger a collection or two).
        self._changes: list[float] = []
        self._prices: list[float] = []  # price and fee of every fill, in _changes' order
        self._columns: tuple[int, _Columns] | None = None  # _changes as arrays, and its length

    def __reduce__(self) -> tuple[type[Ledger], tuple[int, float], object]:
        # Rebuilt through __init__, then given its state: compiled with mypyc (the optional
        # fast build), a class whose __init__ takes arguments cannot be unpickled otherwise.
        return type(self), (self.n_symbols, self.initial_cash), self.__getstate__()

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

    def closing_orders(self) -> list[tuple[int, float]]:
        """``(symbol, quantity)`` of the orders that close every open position, by symbol:
        what a halt (drawdown, daily loss) sends, in the backtest and the agent alike."""
        return [(symbol, -quantity) for symbol, quantity in sorted(self.held.items())]

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

    def book(self, fill: FillRecord) -> None:
        """Book a fill record (anything with bar, symbol, quantity, price, commission)."""
        self.apply_fill(fill.bar, fill.symbol, fill.quantity, fill.price, fill.commission)

    def apply_fill(self, bar: int, symbol: int, quantity: float, price: float, fee: float) -> None:
        """Book a fill given as plain values: move cash, update the position, close or open
        lots. The backtest books every order's fill here, hence the work is done here (plain
        values: no record to build or read per fill)."""
        flow = -quantity * price - fee
        self.cash += flow
        self.commissions += fee
        held = self.held
        after = held.get(symbol, 0.0) + quantity
        if abs(after) < DUST:
            held.pop(symbol, None)
        else:
            held[symbol] = after
        self._changes.extend((bar, symbol, quantity, flow))
        self._prices.extend((price, fee))
        lots = self.lots[symbol]
        fee_per_unit = fee / abs(quantity) if quantity else 0.0
        remaining = quantity
        if lots and (lots[0].quantity > 0) != (quantity > 0):
            remaining = self._close_lots(lots, bar, symbol, quantity, price, fee_per_unit)
        if abs(remaining) > DUST:
            lots.append(Lot(bar, remaining, price, abs(remaining) * fee_per_unit))

    def fills(self) -> list[tuple[int, int, float, float, float]]:
        """Every fill booked, oldest first: ``(bar, symbol, quantity, price, commission)``
        (what the journal records of a backtest, for its round trips)."""
        changes, prices = self._changes, self._prices
        return [
            (int(changes[i]), int(changes[i + 1]), changes[i + 2], prices[k], prices[k + 1])
            for k, i in zip(range(0, len(prices), 2), range(0, len(changes), 4), strict=True)
        ]

    def settle(self, bar: int, symbol: int, price: float) -> float:
        """Close the position in ``symbol`` at its settlement ``price`` (a binary contract's
        1 or 0) without commission, as a fill at bar ``bar``: cash is credited quantity times
        price and the open lots close into trades. Returns the quantity settled (0 if none
        was held)."""
        quantity = self.held.get(symbol, 0.0)
        if quantity:
            self.apply_fill(bar, symbol, -quantity, price, 0.0)
        return quantity

    def _close_lots(
        self, lots: deque[Lot], bar: int, symbol: int, quantity: float, price: float, fee: float
    ) -> float:
        """Close the oldest opposite lots against ``quantity`` at ``price`` (``fee`` per unit),
        recording a trade for each; return the quantity left to open a lot with."""
        remaining = quantity
        while lots and abs(remaining) > DUST and (lots[0].quantity > 0) != (remaining > 0):
            lot = lots[0]
            # Within rounding of the lot's size counts as closing it: fractional sizes such as
            # 0.1 + 0.2 - 0.3 must not leave a dust lot behind.
            partial = abs(remaining) < abs(lot.quantity) * (1.0 - CLOSE_TOLERANCE)
            closed = -remaining if partial else lot.quantity
            entry_fee = lot.commission * (closed / lot.quantity)
            exit_fee = abs(closed) * fee
            pnl = closed * (price - lot.price) - entry_fee - exit_fee
            self.realized_pnl += pnl
            self.trades.append(
                ClosedTrade(
                    symbol, lot.bar, bar, lot.price, price, closed, pnl, entry_fee + exit_fee
                )
            )
            if partial:
                lot.quantity -= closed
                lot.commission -= entry_fee
            else:
                lots.popleft()
            remaining += closed
        return remaining

    # Both paths change only at bars with fills: they sum the fills of each such bar, run a
    # cumulative sum over those few bars, then repeat each level until the next one. Adding
    # the zeros of the bars in between would not change a bit, and skipping them saves two
    # passes over every bar of the run.

    def position_path(self, n_bars: int) -> FloatArray:
        """Positions held at the close of every bar, shape (n_bars, n_symbols)."""
        if not self._changes:
            return np.zeros((n_bars, self.n_symbols))
        return position_path_of(self._change_columns(), self.n_symbols, n_bars)

    def cash_path(self, n_bars: int) -> FloatArray:
        """Cash at the close of every bar."""
        if not self._changes:
            return np.full(n_bars, self.initial_cash)
        return cash_path_of(self._change_columns(), self.initial_cash, n_bars)

    def _change_columns(self) -> _Columns:
        """The fills so far as columns (see ``change_columns``). Kept until the next fill:
        a result asks for both paths."""
        count = len(self._changes)
        if self._columns is None or self._columns[0] != count:
            self._columns = (count, change_columns(self._changes))
        return self._columns[1]


# The paths are functions of the fills alone, so the sweep's batch kernel, which books its
# fills without a Ledger, gets the same arrays to the last bit.


def change_columns(changes: list[float]) -> _Columns:
    """Fills given flat as ``bar, symbol, quantity, cash flow, ...`` (at least one) as
    arrays: the bars with fills (sorted), each fill's position among those bars, and its
    symbol, quantity and cash flow."""
    table = np.array(changes, dtype=np.float64).reshape(-1, 4)
    changed, group = np.unique(table[:, 0].astype(np.intp), return_inverse=True)
    symbols = table[:, 1].astype(np.intp)
    return changed, group, symbols, table[:, 2], table[:, 3]


def position_path_of(columns: _Columns, width: int, n_bars: int) -> FloatArray:
    """Positions held at the close of every bar, shape (n_bars, width), from fill columns."""
    changed, group, symbols, quantities, _ = columns
    flat = np.bincount(group * width + symbols, weights=quantities, minlength=changed.size * width)
    levels = np.zeros((changed.size + 1, width))
    levels[1:] = flat.reshape(changed.size, width).cumsum(axis=0)
    levels[np.abs(levels) < DUST] = 0.0
    return levels.repeat(_level_lengths(changed, n_bars), axis=0)


def cash_path_of(columns: _Columns, initial_cash: float, n_bars: int) -> FloatArray:
    """Cash at the close of every bar, from fill columns."""
    changed, group, _, _, flows = columns
    levels = np.zeros(changed.size + 1)
    levels[1:] = np.bincount(group, weights=flows, minlength=changed.size).cumsum()
    cash: FloatArray = initial_cash + levels.repeat(_level_lengths(changed, n_bars))
    return cash


def _level_lengths(changed: _IntArray, n_bars: int) -> _IntArray:
    """How many bars each level lasts: the one before the first fill, then one per bar with
    fills, up to the next such bar or the end."""
    bounds = np.empty(changed.size + 2, dtype=np.intp)
    bounds[0], bounds[1:-1], bounds[-1] = 0, changed, n_bars
    return bounds[1:] - bounds[:-1]
