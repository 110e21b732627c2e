"""The sweep's batch kernel: many parameter sets of one strategy over one symbol, run together.

A sweep point spent most of its time on what the engine builds around each order (an intent
with a client id and a time, an order in the broker's queue, a verdict, a log check) and on
indicators recomputed for every point although many points share them. For a strategy that
shares its indicators (``SharingStrategy``: ``sma_cross`` computes each SMA window once for
the whole batch) on a single symbol, the kernel runs each point as a plain loop over its
instructions that calls the engine's own arithmetic: ``order_sizes`` to size, the risk
checks to approve, the fill model to price, the ``Ledger`` to book; then the engine's equity
paths and statistics. Every point therefore gets exactly the single run's trades and stats,
which ``tests/unit/backtest/test_kernel.py`` checks against ``run_backtest``.

What the kernel does not model it hands back (``BatchKernel.run`` returns None) for the sweep
to run on the engine: a point whose strategy cannot be built, whose targets are malformed or
look ahead, an order a risk check would deny, and a drawdown limit the equity comes near.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ffe.backtest.causality import batch_targets, verify_point_in_time
from ffe.backtest.engine import BacktestConfig, marked_equity
from ffe.backtest.result import benchmark_prices, run_stats
from ffe.decide.strategy import SharingStrategy, make_strategy, shares_indicators
from ffe.domain.errors import FfeError
from ffe.domain.market import FloatArray, History, MarketData, finite_marks
from ffe.portfolio.ledger import (
    CLOSE_TOLERANCE,
    DUST,
    ClosedTrade,
    cash_path_of,
    position_path_of,
)
from ffe.portfolio.stats import Stats, periods_per_year
from ffe.risk.engine import (
    MaxDrawdownHalt,
    MaxGrossLeverage,
    MaxPositionPct,
    RiskEngine,
    reduces_only,
)
from ffe.risk.rules import (
    EmergencyHalt,
    LossCooldown,
    MaxDailyLoss,
    MaxTradesPerDay,
    MinConfidence,
    StaleData,
)
from ffe.risk.sizing import sizing_budget, target_quantity

# Checks that read the live agent's RiskContext: a backtest has none, so they allow all.
_CONTEXT_ONLY = (
    EmergencyHalt,
    LossCooldown,
    MaxDailyLoss,
    MaxTradesPerDay,
    MinConfidence,
    StaleData,
)
# Checks of the intent and the account alone, which the kernel asks as the engine does.
_ASKED = (MaxPositionPct, MaxGrossLeverage)
# How close (as a fraction of the peak) equity may come to a drawdown limit before a point
# goes to the engine: far more than the last-bit differences between the engine's drawdown
# monitor and the equity path, far less than any limit a user sets.
_DRAWDOWN_MARGIN = 1e-6

Fill = tuple[int, int, float, float, float]  # decision bar, symbol, quantity, price, commission


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One point's run by the kernel: its filled orders, closed trades, equity and stats."""

    fills: list[Fill]
    trades: list[ClosedTrade]
    equity: FloatArray
    stats: Stats


def batchable(market: MarketData, strategy: str, config: BacktestConfig, risk: RiskEngine) -> bool:
    """Whether the kernel can run points of this sweep: one symbol, targets asked once for
    the whole history, a strategy that shares its indicators, and only risk checks it knows
    (a drawdown halt only as ``risk.max_drawdown``'s, the one the engine watches equity for
    and the kernel judges on the equity path; another denies from the starting cash on)."""
    known = (*_CONTEXT_ONLY, *_ASKED)
    return (
        market.n_symbols == 1
        and config.mode == "batch"
        and all(_known(check, known, risk.max_drawdown) for check in risk.checks)
        and shares_indicators(strategy)
    )


def _known(check: object, known: tuple[type, ...], drawdown: float | None) -> bool:
    if isinstance(check, MaxDrawdownHalt):
        return check.limit == drawdown
    return isinstance(check, known)


class BatchKernel:
    """Runs parameter sets of ``strategy`` over ``market``, sharing indicators between them.
    Build one per batch of points (``batchable`` must hold); it keeps the shared arrays."""

    def __init__(
        self, market: MarketData, strategy: str, config: BacktestConfig, risk: RiskEngine
    ) -> None:
        self.market = market
        self.strategy = strategy
        self.config = config
        self._shared: dict[Hashable, FloatArray] = {}
        self._shared_cut: dict[int, dict[Hashable, FloatArray]] = {}  # per shortened history
        self._marks = finite_marks(market.mark)
        fill = config.fill
        prices = market.open if fill.at == "next_open" else market.close
        self._mark_column: list[float] = self._marks[:, 0].tolist()
        self._close_column: list[float] = market.close[:, 0].tolist()
        self._price_column: list[float] = prices[:, 0].tolist()
        self._fill = fill
        self._slippage = fill.slippage_bps != 0.0
        self._delay = fill.delay
        self._cost_rate = fill.cost_rate
        self._lot = config.lot_size
        checks = risk.checks
        self._position_limits = [c for c in checks if isinstance(c, MaxPositionPct)]
        self._gross_limits = [c for c in checks if isinstance(c, MaxGrossLeverage)]
        self._drawdown = risk.max_drawdown
        self._benchmark = benchmark_prices(market)
        self._per_year = periods_per_year(market.times, market.timeframe)

    def run(self, params: dict[str, Any]) -> BatchRun | None:
        """The run of one parameter set, or None when the engine must run it (see above)."""
        try:
            # batchable() found targets_sharing on the class: an isinstance check against
            # the protocol per point would cost more than the point's indicators.
            strategy = cast("SharingStrategy", make_strategy(self.strategy, params))
            targets = self._targets(strategy)
        except FfeError:
            return None  # the engine's run reports it, as it would without the kernel
        column = targets[:, 0]
        index = np.flatnonzero(~np.isnan(column))
        book = self._simulate(index.tolist(), column[index].tolist())
        if book is None:
            return None
        positions, cash = self._paths(book)
        equity = marked_equity(positions, cash, self._marks)
        if self._drawdown is not None and self._near_drawdown_limit(equity, self._drawdown):
            return None
        stats = run_stats(
            self.market, equity, positions, book.trades, book.commissions,
            self._benchmark, self._per_year,
        )  # fmt: skip
        return BatchRun(book.fills, book.trades, equity, stats)

    def _paths(self, book: _Book) -> tuple[FloatArray, FloatArray]:
        """Positions and cash per bar, from the ledger's own path functions."""
        n_bars, cash = self.market.n_bars, self.config.cash
        count = len(book.fill_bars)
        if count == 0:
            return np.zeros((n_bars, 1)), np.full(n_bars, cash)
        # The columns Ledger builds with np.unique, built directly: the kernel's fills are
        # one per bar, in time order, so the bars are already unique and sorted and each
        # fill's group is its own position.
        numbers = np.arange(count, dtype=np.intp)
        bars = np.array(book.fill_bars, dtype=np.intp)
        quantities = np.array(book.quantities, dtype=np.float64)
        flows = np.array(book.flows, dtype=np.float64)
        columns = (bars, numbers, np.zeros(count, dtype=np.intp), quantities, flows)
        return position_path_of(columns, 1, n_bars), cash_path_of(columns, cash, n_bars)

    def _targets(self, strategy: SharingStrategy) -> FloatArray:
        """The engine's targets, and its look-ahead check, from the shared indicators."""
        shared = self._shared
        targets = batch_targets(
            strategy, self.market, lambda h: strategy.targets_sharing(h, shared)
        )
        if self.config.check_lookahead:

            def shortened(history: History) -> FloatArray:
                cut = self._shared_cut.setdefault(len(history), {})
                return strategy.targets_sharing(history, cut)

            verify_point_in_time(strategy, self.market, targets, shortened)
        return targets

    def _simulate(self, bars: list[int], weights: list[float]) -> _Book | None:
        """Size, check, fill and book every instruction, in time order, as the engine does
        (``_Simulation``, ``order_sizes``, ``RiskEngine.evaluate``, ``SimulatedBroker``).

        An order fills before the next instruction in either fill mode (at the next bar's
        open or at this bar's close), so each is booked right after it is decided."""
        book = _Book(self.config.cash, self._mark_column)
        close, prices, lot = self._close_column, self._price_column, self._lot
        n_bars, delay, fill, cost_rate = len(close), self._delay, self._fill, self._cost_rate
        for k in range(len(bars)):
            bar = bars[k]
            reference = close[bar]
            if not reference > 0:
                continue  # nothing to size against: order_sizes skips it
            equity, gross = book.marked(bar)
            before = book.held
            budget = sizing_budget(equity, cost_rate)
            quantity = target_quantity(weights[k], budget, reference, lot) - before
            if not abs(quantity) >= lot * 1e-9:
                continue  # already holds the target
            if self._denied(quantity, reference, before, equity, gross):
                return None
            fill_bar = bar + delay
            price = prices[fill_bar] if fill_bar < n_bars else math.nan
            if not price > 0:
                continue  # the broker cancels it (no bar left) or rejects it (no price)
            if self._slippage:
                price = fill.price(quantity, price)
            if not book.book(bar, fill_bar, quantity, price, fill.fee(quantity, price)):
                return None
        return book

    def _denied(
        self, quantity: float, reference: float, before: float, equity: float, gross: float
    ) -> bool:
        """Whether the engine's ``RiskEngine.evaluate`` would deny this order, asking the
        known checks what they would (the drawdown halt is judged on the equity path)."""
        after = before + quantity
        if reduces_only(before, after):
            return False
        if equity <= 0:
            return True
        position = abs(after) * reference
        gross_after = gross + (abs(after) - abs(before)) * reference
        for limit in self._position_limits:
            if not limit.allows(position, equity):
                return True
        denied = False  # a loop, not any() over a generator: this runs for every order
        for leverage in self._gross_limits:
            denied = denied or not leverage.allows(gross_after, equity)
        return denied

    def _near_drawdown_limit(self, equity: FloatArray, limit: float) -> bool:
        """Whether equity ever comes within the margin of ``limit`` below its running peak
        (the starting cash counting as a peak, as in the engine's monitor)."""
        peaks = np.maximum.accumulate(np.maximum(equity, self.config.cash))
        lowest = float((equity / peaks).min())
        return not lowest > 1.0 - limit + _DRAWDOWN_MARGIN  # NaN counts as near


class _Book:
    """A ``Ledger`` of one symbol holding at most one lot, which is all a strategy that
    flips or closes its whole position needs: the same arithmetic, in plain floats. It
    refuses (``book`` returns False) a fill that would add a second lot or close part of
    one, which the engine's FIFO ledger handles."""

    def __init__(self, cash: float, marks: list[float]) -> None:
        self.cash = cash
        self.held = 0.0  # 0.0 when not held: Ledger.held has no entry then
        self.commissions = 0.0
        self.marks = marks
        self.lot: tuple[int, float, float, float] | None = None  # bar, quantity, price, fee
        self.trades: list[ClosedTrade] = []
        # Ledger._changes in columns: the bar, quantity and cash flow of every fill
        self.fill_bars: list[int] = []
        self.quantities: list[float] = []
        self.flows: list[float] = []
        self.fills: list[Fill] = []

    def marked(self, bar: int) -> tuple[float, float]:
        """Equity and gross exposure at ``bar``, as ``Ledger.marked``."""
        if self.held == 0.0:
            return self.cash, 0.0
        value = self.held * self.marks[bar]
        return self.cash + value, abs(value)

    def book(self, bar: int, fill_bar: int, quantity: float, price: float, fee: float) -> bool:
        """``Ledger.apply_fill`` of an order decided at ``bar``; False if not modelled."""
        lot, remaining = self.lot, quantity
        fee_per_unit = fee / abs(quantity) if quantity else 0.0
        if lot is not None and (lot[1] > 0) != (quantity > 0) and abs(quantity) > DUST:
            if abs(quantity) < abs(lot[1]) * (1.0 - CLOSE_TOLERANCE):
                return False  # closes part of the lot
            self._close(lot, fill_bar, price, fee_per_unit)
            remaining += lot[1]
            lot = None
        if abs(remaining) > DUST:
            if lot is not None:
                return False  # a second lot
            lot = (fill_bar, remaining, price, abs(remaining) * fee_per_unit)
        flow = -quantity * price - fee
        self.cash += flow
        self.commissions += fee
        after = self.held + quantity
        self.held = 0.0 if abs(after) < DUST else after
        self.lot = lot
        self.fill_bars.append(fill_bar)
        self.quantities.append(quantity)
        self.flows.append(flow)
        self.fills.append((bar, 0, quantity, price, fee))
        return True

    def _close(
        self, lot: tuple[int, float, float, float], bar: int, price: float, fee_per_unit: float
    ) -> None:
        entry_bar, closed, entry_price, commission = lot
        entry_fee = commission * (closed / closed)  # Ledger: the lot's share that closes
        exit_fee = abs(closed) * fee_per_unit
        pnl = closed * (price - entry_price) - entry_fee - exit_fee
        self.trades.append(
            ClosedTrade(0, entry_bar, bar, entry_price, price, closed, pnl, entry_fee + exit_fee)
        )
