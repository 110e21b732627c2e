"""What a backtest produced: equity, positions, trades, orders, denials, and statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from ffe.decide.strategy import Strategy, plain_params
from ffe.domain.market import FloatArray, MarketData
from ffe.domain.orders import Decision, Denied, Trade
from ffe.execution.simulated import SimOrder
from ffe.portfolio.ledger import ClosedTrade, Ledger
from ffe.portfolio.stats import Stats, compute_stats, periods_per_year


@dataclasses.dataclass(eq=False)
class BacktestResult:
    """The outcome of one run. Domain objects (trades, fills) are built when first asked for."""

    market: MarketData
    strategy: Strategy
    config: Any  # BacktestConfig; typed loosely to avoid an import cycle with the engine
    targets: FloatArray
    equity: FloatArray
    positions: FloatArray
    ledger: Ledger
    orders: list[SimOrder]
    denials: list[tuple[int, Denied]]
    halted_at: int | None
    decisions: tuple[Decision, ...] = ()  # from strategies that explain themselves

    @property
    def params(self) -> dict[str, Any]:
        """The strategy's parameters (those that are plain values: never a secret)."""
        return plain_params(self.strategy)

    def run_stats(self) -> dict[str, Any]:
        """The statistics of ``stats`` and, for a strategy with an LLM voter, ``llm_failures``:
        its decisions the voter failed to vote on (each says why in its details)."""
        return with_llm_failures(self.stats.as_dict(), self.strategy, llm_failures(self.decisions))

    @cached_property
    def benchmark(self) -> FloatArray:
        """Buy and hold of an equal-weight basket of the symbols, as prices."""
        return benchmark_prices(self.market)

    @cached_property
    def stats(self) -> Stats:
        """Performance statistics of the run."""
        ledger = self.ledger
        return run_stats(
            self.market, self.equity, self.positions, ledger.trades, ledger.commissions,
            self.benchmark,
        )  # fmt: skip

    @cached_property
    def warnings(self) -> list[str]:
        """What in the statistics is too good to be true, and its usual cause."""
        from ffe.backtest.plausibility import implausible

        return implausible(self.stats, self.market.timeframe)

    @cached_property
    def trades(self) -> list[Trade]:
        """Closed round trips, oldest first."""
        return [trade_of(t, self.market) for t in self.ledger.trades]

    def open_positions(self) -> dict[str, float]:
        """Positions still open at the end of the run."""
        return {
            self.market.symbols[j]: float(q)
            for j, q in enumerate(self.ledger.positions)
            if q != 0.0
        }

    def to_dict(self) -> dict[str, Any]:
        """Stats, trades, open positions and denials as JSON-ready data."""
        time_of = self.market.time_of
        return {
            "strategy": self.strategy.name,
            "params": self.params,
            "symbols": list(self.market.symbols),
            "stats": self.run_stats(),
            "trades": [trade_dict(trade) for trade in self.trades],
            "open_positions": self.open_positions(),
            "denials": [
                {
                    "time": time_of(bar).isoformat(),
                    "symbol": d.intent.symbol,
                    "check": d.check,
                    "reason": d.reason,
                }
                for bar, d in self.denials
            ],
            "halted_at": None if self.halted_at is None else time_of(self.halted_at).isoformat(),
            **({"warnings": self.warnings} if self.warnings else {}),
        }


def benchmark_prices(market: MarketData) -> FloatArray:
    """Buy and hold of an equal-weight basket of ``market``'s symbols, as prices."""
    marks = market.mark
    if marks.shape[1] == 1:  # the mean of one price is that price: skip the averaging
        column = marks[:, 0]
        known = np.flatnonzero(~np.isnan(column))
        return column / column[known[0]] if known.size else column.copy()
    known = ~np.isnan(marks)
    first = marks[np.argmax(known, axis=0), np.arange(marks.shape[1])]
    # np.nanmean's own arithmetic (sum of the known over their count), without its copies;
    # rows with no known mark are 0 / 0, NaN.
    with np.errstate(invalid="ignore"):
        relative = np.where(known, marks / first, 0.0).sum(axis=1) / known.sum(axis=1)
    return np.asarray(relative, dtype=np.float64)


def run_stats(
    market: MarketData,
    equity: FloatArray,
    positions: FloatArray,
    trades: Sequence[ClosedTrade],
    commissions: float,
    benchmark: FloatArray,
    per_year: float | None = None,
) -> Stats:
    """Statistics of a run over ``market``: the result's own, and the sweep's batch kernel's
    (which passes ``benchmark`` and ``per_year`` computed once for all its points)."""
    if per_year is None:
        per_year = periods_per_year(market.times, market.timeframe)
    return compute_stats(
        times=market.times,
        equity=equity,
        trades=trades,
        exposure=_exposure(positions),
        benchmark=benchmark,
        periods_per_year=per_year,
        commissions=commissions,
    )


def _exposure(positions: FloatArray) -> npt.NDArray[np.bool_]:
    """Per bar, whether any position is open."""
    if positions.shape[1] == 1:  # one symbol: its column, without a reduction over rows
        column: npt.NDArray[np.bool_] = positions[:, 0] != 0.0
        return column
    rows: npt.NDArray[np.bool_] = (positions != 0.0).any(axis=1)
    return rows


def trade_of(closed: ClosedTrade, market: MarketData) -> Trade:
    """A ledger's closed trade (bar and column positions) as a domain ``Trade``."""
    time_of = market.time_of
    return Trade(
        symbol=market.symbols[closed.symbol],
        entry_time=time_of(closed.entry_bar),
        exit_time=time_of(closed.exit_bar),
        entry_price=closed.entry_price,
        exit_price=closed.exit_price,
        quantity=closed.quantity,
        pnl=closed.pnl,
        commission=closed.commission,
    )


def trade_dict(trade: Trade) -> dict[str, Any]:
    return {
        "symbol": trade.symbol,
        "direction": trade.direction,
        "entry_time": trade.entry_time.isoformat(),
        "exit_time": trade.exit_time.isoformat(),
        "entry_price": trade.entry_price,
        "exit_price": trade.exit_price,
        "size": abs(trade.quantity),
        "pnl": trade.pnl,
        "return_pct": trade.return_pct,
        "commission": trade.commission,
    }


def llm_failures(decisions: Sequence[Decision]) -> int:
    """How many of ``decisions`` their LLM voter failed to vote on (``details["llm_failure"]``)."""
    return sum("llm_failure" in d.details for d in decisions)


def with_llm_failures(stats: dict[str, Any], strategy: Strategy, failures: int) -> dict[str, Any]:
    """``stats`` with ``llm_failures`` when the strategy has an LLM voter or any decision
    failed for want of one: what a backtest's and an agent's run records both hold."""
    if failures or getattr(strategy, "llm_provider", "none") != "none":
        return {**stats, "llm_failures": failures}
    return stats
