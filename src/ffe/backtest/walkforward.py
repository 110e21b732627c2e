"""Walk-forward runs: every stretch of bars is traded by a strategy that never saw beyond it.

The bars after the first ``train`` are cut into test windows of ``test`` bars (the last may
be shorter). For each window a fresh strategy is built and asked for its targets on the
``train`` bars before the window and the window itself, nothing later; only the window's
rows are kept. The windows' targets, joined, are then traded as one continuous run over the
out-of-sample bars by the normal engine, so cash and positions carry from one window into
the next just as they would have in real time.

Segments are independent, so they run on an executor (a local process pool, one process per
core, by default).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from ffe.backtest.causality import batch_explained, stream_targets, verify_point_in_time
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.result import BacktestResult
from ffe.compute import Executor, LocalExecutor, in_order
from ffe.decide.strategy import Explained, make_strategy
from ffe.domain.errors import ConfigError
from ffe.domain.market import FloatArray, History, MarketData
from ffe.domain.orders import Decision
from ffe.portfolio.stats import drawdown_series, periods_per_year
from ffe.risk.engine import RiskEngine

log = logging.getLogger(__name__)

_SPEC = re.compile(r"^\s*(\w+)\s*=\s*([^,\s]+)\s*,\s*(\w+)\s*=\s*([^,\s]+)\s*$")
Window = tuple[int, int]  # test bars [start, stop) of one segment, in the full market


@dataclass(frozen=True, slots=True)
class WalkForwardSpec:
    """Bars each segment is given before its test window (``train``), and bars per test
    window (``test``)."""

    train: int
    test: int

    def __post_init__(self) -> None:
        for name, value in (("train", self.train), ("test", self.test)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"walk-forward {name} must be a positive whole number of bars")

    @classmethod
    def parse(cls, text: str) -> WalkForwardSpec:
        """``"train=750,test=250"`` (either order) → ``WalkForwardSpec(750, 250)``."""
        hint = "--walk-forward must look like train=750,test=250 (bars to train on, to test on)"
        match = _SPEC.match(text)
        if match is None:
            raise ConfigError(f"{hint}; got {text!r}")
        values = dict(zip(match.group(1, 3), match.group(2, 4), strict=True))
        if set(values) != {"train", "test"}:
            raise ConfigError(f"{hint}; got {text!r}")
        numbers = {}
        for name, value in values.items():
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"walk-forward {name}={value} must be a positive whole number")
            numbers[name] = int(value)
        return cls(numbers["train"], numbers["test"])

    def windows(self, n_bars: int) -> list[Window]:
        """Test windows ``[start, stop)`` over ``n_bars`` bars; ConfigError if too few bars."""
        needed = self.train + self.test
        if n_bars < needed:
            raise ConfigError(
                f"walk-forward {self} needs at least {needed:,} bars ({self.train:,} to train "
                f"on, then {self.test:,} to test on), but the data has {n_bars:,}; load more "
                "bars (--start/--end) or make train or test shorter"
            )
        starts = range(self.train, n_bars, self.test)
        return [(start, min(start + self.test, n_bars)) for start in starts]

    def __str__(self) -> str:
        return f"train={self.train},test={self.test}"


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: where it trained and tested (bar indices into the full market, and
    times), and how the joined run did over its test window."""

    number: int  # from 1
    train_start: int
    test_start: int
    test_stop: int  # exclusive
    train_start_time: datetime
    test_start_time: datetime
    test_end_time: datetime  # the time of the last test bar
    total_return: float
    sharpe: float
    max_drawdown: float
    n_trades: int  # round trips closed inside the window

    @property
    def bars(self) -> int:
        return self.test_stop - self.test_start

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "train_start_bar": self.train_start,
            "test_start_bar": self.test_start,
            "test_stop_bar": self.test_stop,
            "train_start": self.train_start_time.isoformat(),
            "test_start": self.test_start_time.isoformat(),
            "test_end": self.test_end_time.isoformat(),
            "bars": self.bars,
            "total_return": _json_number(self.total_return),
            "sharpe": _json_number(self.sharpe),
            "max_drawdown": _json_number(self.max_drawdown),
            "n_trades": self.n_trades,
        }


@dataclass(eq=False)
class WalkForwardResult:
    """The joined out-of-sample run (a normal ``BacktestResult`` over the test bars) with
    the segments it was made of."""

    backtest: BacktestResult
    spec: WalkForwardSpec
    segments: tuple[Segment, ...]
    market: MarketData  # every bar, the training bars of the first segment included
    targets: FloatArray  # joined, over ``market``; NaN before the first test bar

    @property
    def first_test_bar(self) -> int:
        return self.segments[0].test_start

    def to_dict(self) -> dict[str, Any]:
        """The spec and every segment, JSON-ready."""
        return {
            "train": self.spec.train,
            "test": self.spec.test,
            "segments": [segment.to_dict() for segment in self.segments],
        }


def run_walk_forward(
    market: MarketData,
    strategy_name: str,
    params: Mapping[str, Any] | None,
    train: int,
    test: int,
    config: BacktestConfig | None = None,
    risk: RiskEngine | None = None,
    workers: int | None = None,
    progress: Callable[[], None] | None = None,
    executor: Executor | None = None,
) -> WalkForwardResult:
    """Walk ``strategy_name`` forward over ``market``; see the module docstring.

    ``executor`` computes the segments (else a local pool of ``workers`` processes; None: one
    per core; 1: in this process). ``progress`` is called each time a segment is done.
    """
    config = config or BacktestConfig()
    spec = WalkForwardSpec(train, test)
    windows = spec.windows(market.n_bars)
    template = make_strategy(strategy_name, params)  # bad parameters fail here, not in a worker
    if template.warmup() > train:
        log.warning(
            "train=%d is shorter than the %d bars %s needs to warm up: the first test bars "
            "of each segment get no instructions",
            train,
            template.warmup(),
            strategy_name,
        )
    setup = SegmentSetup(market, strategy_name, dict(params or {}), train, config)
    parts = _explain_segments(setup, windows, executor or LocalExecutor(workers), progress)
    joined = trade_segments(market, windows, parts, config, risk)
    joined.strategy = template
    segments = _segments(market, joined, windows, train)
    return WalkForwardResult(
        joined, spec, segments, market, _joined_targets(market, windows, parts)
    )


# -- segments -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentSetup:
    """What every segment needs; sent once to each worker process, not once per segment."""

    market: MarketData
    strategy: str
    params: dict[str, Any]
    train: int
    config: BacktestConfig


def explain_segment(setup: SegmentSetup, window: Window) -> Explained:
    """Targets (the window's rows only) and decisions of one segment, from a fresh strategy
    given the ``train`` bars before the window and the window, nothing after.

    The tuner calls it too, one segment at a time, so a trial can be pruned between them."""
    start, stop = window
    view = setup.market.select(start - setup.train, stop)
    strategy = make_strategy(setup.strategy, setup.params)
    if setup.config.mode == "stream":
        explained = Explained(stream_targets(strategy, view))
    else:
        explained = batch_explained(strategy, view)
        if setup.config.check_lookahead:
            verify_point_in_time(strategy, view, explained.targets)
    first, last = view.time_of(setup.train), view.time_of(view.n_bars - 1)
    kept = tuple(d for d in explained.decisions if first <= d.time <= last)
    return Explained(explained.targets[setup.train :], kept)


def _explain_segments(
    setup: SegmentSetup,
    windows: Sequence[Window],
    executor: Executor,
    progress: Callable[[], None] | None,
) -> list[Explained]:
    def done(index: int, part: Explained) -> None:
        if progress is not None:
            progress()

    # One segment failing raises here, and the segments not yet started are dropped.
    return in_order(executor.map(explain_segment, windows, setup, progress=done), len(windows))


# -- the joined run -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Replay:
    """Targets and decisions worked out already, handed to the engine as a strategy."""

    name: ClassVar[str] = "walk_forward"
    explained: Explained

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> FloatArray:
        return self.explained.targets[: len(history)]

    def explain(self, history: History) -> Explained:
        return Explained(self.targets(history), self.explained.decisions)


def trade_segments(
    market: MarketData,
    windows: Sequence[Window],
    parts: Sequence[Explained],
    config: BacktestConfig,
    risk: RiskEngine | None,
) -> BacktestResult:
    """The joined run: the segments' targets (``parts``, one per window, in order) traded as
    one continuous run from the first window's first bar to the last window's last, so cash
    and positions carry across windows. Given the first j windows only, it is the run of the
    first j segments, bar for bar what the full run does up to there."""
    first, stop = windows[0][0], windows[len(parts) - 1][1]
    targets = _joined_targets(market, windows, parts)[first:stop]
    decisions = tuple(decision for part in parts for decision in part.decisions)
    return _run_joined(market.select(first, stop), targets, decisions, config, risk)


def _joined_targets(
    market: MarketData, windows: Sequence[Window], parts: Sequence[Explained]
) -> FloatArray:
    """The parts' targets in their windows' rows of ``market``; NaN elsewhere."""
    targets = np.full((market.n_bars, market.n_symbols), np.nan)
    for (start, stop), part in zip(windows, parts, strict=False):
        targets[start:stop] = part.targets
    return targets


def _run_joined(
    market: MarketData,
    targets: FloatArray,
    decisions: tuple[Decision, ...],
    config: BacktestConfig,
    risk: RiskEngine | None,
) -> BacktestResult:
    # Each segment was computed on its own slice (and checked there), so the replay is
    # neither checked for look-ahead again nor streamed bar by bar.
    replay = _Replay(Explained(targets, decisions))
    joined_config = dataclasses.replace(config, mode="batch", check_lookahead=False)
    result = run_backtest(market, replay, joined_config, risk)
    result.config = config
    return result


def _segments(
    market: MarketData, joined: BacktestResult, windows: Sequence[Window], train: int
) -> tuple[Segment, ...]:
    first = windows[0][0]
    equity = joined.equity
    ppy = periods_per_year(joined.market.times, joined.market.timeframe)
    exits = np.array([trade.exit_bar for trade in joined.ledger.trades], dtype=np.int64)
    segments = []
    for number, (start, stop) in enumerate(windows, start=1):
        low, high = start - first, stop - first
        # From the equity before the window's first bar (the starting cash for the first).
        before = joined.config.cash if low == 0 else equity[low - 1]
        curve = np.concatenate([[before], equity[low:high]])
        segments.append(
            Segment(
                number=number,
                train_start=start - train,
                test_start=start,
                test_stop=stop,
                train_start_time=market.time_of(start - train),
                test_start_time=market.time_of(start),
                test_end_time=market.time_of(stop - 1),
                total_return=_ratio(float(curve[-1]), float(curve[0])) - 1.0,
                sharpe=_sharpe(curve, ppy),
                max_drawdown=float(drawdown_series(curve).min()),
                n_trades=int(np.count_nonzero((exits >= low) & (exits < high))),
            )
        )
    return tuple(segments)


def _sharpe(curve: FloatArray, ppy: float) -> float:
    """Annualised Sharpe ratio of the per-bar returns of ``curve`` (as in ``Stats``)."""
    if len(curve) < 3:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = curve[1:] / curve[:-1] - 1.0
    std = float(np.std(returns, ddof=1))
    if not std > 0:
        return math.nan
    return float(np.mean(returns)) / std * math.sqrt(ppy)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value
