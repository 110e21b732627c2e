"""Scoring trials: one walk-forward segment of one trial at a time, on the executor; and the
chosen parameters, once, on the holdout.

A trial's value is its metric over the walk-forward's out-of-sample bars: the segments'
targets, each from a fresh strategy that saw only its ``train`` bars and its window, joined
and traded as one continuous run (``ffe.backtest.walkforward``). After segment j the trial
reports the metric of that joined run through the end of segment j, so pruning compares
trials on the same bars and the last report is the trial's value. The item sent for segment
j carries the targets of the segments before it, so a worker keeps nothing between items
and any worker (a local process, a Ray node) can take any item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ffe.backtest.engine import BacktestConfig
from ffe.backtest.objective import as_number
from ffe.backtest.result import BacktestResult
from ffe.backtest.walkforward import SegmentSetup, Window, explain_segment, trade_segments
from ffe.decide.strategy import Explained
from ffe.domain.errors import ConfigError, FfeError
from ffe.domain.market import FloatArray, MarketData
from ffe.portfolio.stats import periods_per_year
from ffe.risk.engine import RiskEngine


@dataclass(frozen=True, slots=True)
class TrialSetup:
    """What every item of a study needs, sent once to each worker. ``market`` holds the
    tuning bars only: the holdout was cut off before this was built."""

    market: MarketData
    strategy: str
    train: int
    windows: tuple[Window, ...]
    config: BacktestConfig
    risk: RiskEngine | None
    metric: str
    fixed: dict[str, Any] = field(default_factory=dict)  # TuneSpec.fixed

    def params(self, trial: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's parameters over the fixed ones."""
        return {**self.fixed, **trial}


@dataclass(frozen=True, slots=True)
class SegmentItem:
    """Score segment ``len(parts)`` of trial ``trial``, its earlier segments' ``parts`` given."""

    trial: int
    params: dict[str, Any]
    parts: tuple[Explained, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentScore:
    """The trial's metric (and Sharpe ratio, annualised) over its joined run so far, and the
    segment's part to send with its next item; or why the segment could not run."""

    trial: int
    part: Explained | None
    value: float
    sharpe: float
    error: str | None = None


def score_segments(setup: TrialSetup, items: list[SegmentItem]) -> list[SegmentScore]:
    """``score_segment`` for each item, in order: one task of the executor."""
    return [score_segment(setup, item) for item in items]


def score_segment(setup: TrialSetup, item: SegmentItem) -> SegmentScore:
    """Explain the next segment of ``item``'s trial and score the joined run through it."""
    try:
        params = setup.params(item.params)
        segment = SegmentSetup(setup.market, setup.strategy, params, setup.train, setup.config)
        part = explain_segment(segment, setup.windows[len(item.parts)])
        parts = (*item.parts, part)
        result = trade_segments(setup.market, setup.windows, parts, setup.config, setup.risk)
    except FfeError as exc:
        return SegmentScore(item.trial, None, math.nan, math.nan, str(exc))
    value, sharpe = metric_value(result, setup.metric), metric_value(result, "sharpe")
    return SegmentScore(item.trial, part, value, sharpe)


def metric_value(result: BacktestResult, metric: str) -> float:
    """``metric`` of ``result`` as a float: NaN where the statistic has no value."""
    return as_number(result.stats.as_dict().get(metric))


def bar_returns(result: BacktestResult) -> FloatArray:
    """Per-bar returns of ``result``'s equity, from its starting cash."""
    equity = np.concatenate([[result.config.cash], np.asarray(result.equity, dtype=float)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(equity[1:] / equity[:-1] - 1.0, dtype=float)


def yearly_periods(result: BacktestResult) -> float:
    """Bars per year of ``result``'s market, as its statistics annualise."""
    return float(periods_per_year(result.market.times, result.market.timeframe))


# -- the holdout ----------------------------------------------------------------------


def holdout_bars(n_bars: int, holdout: float) -> int:
    """Bars kept back: ``holdout`` is a fraction of ``n_bars`` when below 1, else a count."""
    if not holdout >= 0 or (holdout >= 1 and not float(holdout).is_integer()):
        raise ConfigError(
            f"--holdout must be a fraction below 1 (0.2: the last fifth) or a whole number of "
            f"bars, got {holdout}"
        )
    bars = round(n_bars * holdout) if holdout < 1 else int(holdout)
    if bars >= n_bars:
        raise ConfigError(f"--holdout {holdout} keeps back all {n_bars:,} bars: nothing to tune")
    if 0 < bars < 2:
        raise ConfigError("--holdout must keep back at least 2 bars (or 0 for none)")
    return bars


@dataclass(frozen=True, slots=True)
class HoldoutScore:
    """The chosen parameters over the holdout: the metric and the run's statistics."""

    start_bar: int
    bars: int
    value: float
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        value = self.value if math.isfinite(self.value) else None
        return {"start_bar": self.start_bar, "bars": self.bars, "value": value, **self.stats}


def score_holdout(
    market: MarketData,
    start: int,
    setup: TrialSetup,
    params: dict[str, Any],
) -> HoldoutScore:
    """Score ``params`` once on ``market``'s bars from ``start`` (the holdout) to the end.

    The holdout is traded as one more walk-forward segment: a fresh strategy is given the
    ``train`` bars before the holdout (tuning bars, seen already) and the holdout bars, its
    targets are kept for the holdout only, and they are traded alone from the starting cash.
    """
    window = (start, market.n_bars)
    segment = SegmentSetup(market, setup.strategy, setup.params(params), setup.train, setup.config)
    part = explain_segment(segment, window)
    result = trade_segments(market, (window,), (part,), setup.config, setup.risk)
    value = metric_value(result, setup.metric)
    return HoldoutScore(start, market.n_bars - start, value, result.stats.as_dict())
