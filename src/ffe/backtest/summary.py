"""What a finished replay (or backtest) comes to, in a few lines a person reads: its return
against buy and hold over the same bars with the same costs, its worst drawdown, its trades
and how many won, and what to try next. ``ffe run`` and ``ffe agent run`` print it when the
replay ends; the dashboard's Agent page shows the same (``GET /api/v1/agent``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ffe.backtest.benchmark import Costs, with_costs


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run's result set against buy and hold, and the commands worth running next."""

    strategy: str
    symbols: tuple[str, ...]
    total_return: float
    benchmark_return: float  # buy and hold over the same bars, its purchase paying the costs
    max_drawdown: float  # a fraction <= 0
    trades: int
    win_rate: float | None  # None without a closed trade
    costs: str
    next_steps: tuple[str, ...]

    @classmethod
    def of(
        cls,
        stats: Mapping[str, Any],
        *,
        strategy: str,
        symbols: Sequence[str],
        costs: Costs,
        params: Mapping[str, Any] | None = None,
        start: str | None = None,
    ) -> RunSummary:
        """The summary of a run's statistics (``Stats.as_dict()``); ``start`` is where its
        bars began, for the commands suggested next."""
        trades = int(stats.get("n_trades") or 0)
        win_rate = _number(stats.get("win_rate"))
        return cls(
            strategy=strategy,
            symbols=tuple(symbols),
            total_return=_number(stats.get("total_return")) or 0.0,
            benchmark_return=with_costs(_number(stats.get("buy_and_hold_return")) or 0.0, costs),
            max_drawdown=_number(stats.get("max_drawdown")) or 0.0,
            trades=trades,
            win_rate=win_rate if trades else None,
            costs=costs.describe(),
            next_steps=next_steps(strategy, params or {}, symbols, start),
        )

    @property
    def beat_benchmark(self) -> bool:
        return self.total_return > self.benchmark_return

    def lines(self) -> list[str]:
        """Plain lines (no markup): the verdict, the numbers, then what to try next."""
        verdict = "beat" if self.beat_benchmark else "did not beat"
        wins = "no closed trade" if self.win_rate is None else f"{self.win_rate:.0%} won"
        return [
            f"replay finished: {self.strategy} on {', '.join(self.symbols)} {verdict} buy and hold",
            f"  return        {self.total_return:+.1%}  (buy and hold {self.benchmark_return:+.1%},"
            f" {self.costs})",
            f"  max drawdown  {self.max_drawdown:.1%}",
            f"  trades        {self.trades} ({wins})",
            "what to try next:",
            *(f"  {command}" for command in self.next_steps),
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "symbols": list(self.symbols),
            "total_return": self.total_return,
            "benchmark_return": self.benchmark_return,
            "beat_benchmark": self.beat_benchmark,
            "max_drawdown": self.max_drawdown,
            "trades": self.trades,
            "win_rate": self.win_rate,
            "costs": self.costs,
            "next_steps": list(self.next_steps),
        }


def next_steps(
    strategy: str, params: Mapping[str, Any], symbols: Sequence[str], start: str | None
) -> tuple[str, ...]:
    """Three commands that test the result further: the strategy's parameters tuned
    walk-forward (each trial judged on bars it did not train on), a market the choice never
    saw, and the forecasting ensemble on the same bars."""
    market = " ".join(f"--symbol {symbol}" for symbol in symbols)
    since = f" --start {start}" if start else ""
    other = "NASDAQ" if "NASDAQ" not in symbols else "SP500"
    tune = (
        f"ffe tune --strategy sma_cross {market} --param fast=5..60 --param slow=20..250 "
        "--trials 100 --report reports/tune.html"
    )
    chosen = "".join(f" --param {key}={value}" for key, value in params.items())
    elsewhere = f"ffe backtest run --strategy {strategy}{chosen} --symbol {other}{since}"
    ensemble = (
        f"ffe backtest run --strategy ensemble {market}{since} "
        "--walk-forward train=750,test=250 --report reports/ensemble.html"
    )
    return (tune, elsewhere, ensemble)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
