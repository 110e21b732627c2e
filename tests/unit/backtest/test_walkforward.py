from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import numpy as np
import pytest

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.lookahead import poison_after
from ffe.backtest.report import render_walk_forward_report
from ffe.backtest.walkforward import (
    SegmentSetup,
    WalkForwardSpec,
    explain_segment,
    run_walk_forward,
    trade_segments,
)
from ffe.data import BundledBarSource, SyntheticMarket, load_market
from ffe.decide import make_strategy, register
from ffe.decide import strategy as strategy_module
from ffe.decide.strategy import Explained
from ffe.domain import ConfigError, Decision, History, MarketData, StrategyError
from ffe.domain.market import utc_datetime
from ffe.risk import RiskEngine

RISK = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
SEEN: list[tuple[datetime, datetime, int]] = []  # first time, last time, length of each history


@functools.cache
def _sp500(bars: int = 1300) -> MarketData:
    market = load_market(BundledBarSource(), ["SP500"])
    return market.select(market.n_bars - bars, market.n_bars)


def _times(history: History) -> list[datetime]:
    return [utc_datetime(int(t)) for t in history.times.view(np.int64)]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


@dataclass(frozen=True)
class Recorder:
    """Notes the span of every history it is given; explains one decision per 10 bars."""

    name: ClassVar[str] = "test_recorder"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        return self.explain(history).targets

    def explain(self, history: History) -> Explained:
        times = _times(history)
        SEEN.append((times[0], times[-1], len(history)))
        out = np.full(history.close.shape, np.nan)
        out[::10] = 0.5
        decisions = tuple(
            Decision(times[i], history.symbols[0], 0.5, 0.7, f"bar {i}")
            for i in range(0, len(history), 10)
        )
        return Explained(out, decisions)


@dataclass(frozen=True)
class LastBarSigns:
    """Cheats: every row follows the sign of the move into the last bar of the history."""

    name: ClassVar[str] = "test_last_bar_signs"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        close = history.close
        sign = np.sign(close[-1, 0] - close[-2, 0]) if len(history) > 1 else 0.0
        return np.full(close.shape, float(sign))


@dataclass(frozen=True)
class NextClose:
    """Cheats: its target at bar t is the return from close t to close t + 1."""

    name: ClassVar[str] = "test_next_close"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        close = history.close
        out = np.full(close.shape, np.nan)
        out[:-1] = np.clip((close[1:] / close[:-1] - 1.0) * 10.0, -1.0, 1.0)
        return out


TEST_STRATEGIES = (Recorder, LastBarSigns, NextClose)


@pytest.fixture
def registered() -> Iterator[None]:
    for cls in TEST_STRATEGIES:
        register(cls)
    SEEN.clear()
    yield
    for cls in TEST_STRATEGIES:
        strategy_module._REGISTRY.pop(cls.name, None)


# -- the spec --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["train=750,test=250", "test=250, train=750", " train=750 ,test=250"]
)
def test_spec_parse_when_well_formed_then_train_and_test(text: str) -> None:
    assert WalkForwardSpec.parse(text) == WalkForwardSpec(750, 250)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("750,250", "must look like train=750,test=250"),
        ("train=750", "must look like train=750,test=250"),
        ("train=750,test=250,step=5", "must look like train=750,test=250"),
        ("train=750,window=250", "must look like train=750,test=250"),
        ("train=750,train=250", "must look like train=750,test=250"),
        ("train=0,test=250", "train=0 must be a positive whole number"),
        ("train=750,test=-5", "test=-5 must be a positive whole number"),
        ("train=7.5,test=250", "train=7.5 must be a positive whole number"),
    ],
)
def test_spec_parse_when_malformed_then_config_error_saying_how(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WalkForwardSpec.parse(text)


def test_windows_when_bars_left_over_then_last_window_is_shorter() -> None:
    windows = WalkForwardSpec(750, 100).windows(1060)

    assert windows == [(750, 850), (850, 950), (950, 1050), (1050, 1060)]


def test_run_when_too_few_bars_then_config_error_with_needed_and_available() -> None:
    market = SyntheticMarket(1, 600, seed=1).to_market()

    with pytest.raises(ConfigError, match=r"at least 1,000 bars .* the data has 600"):
        run_walk_forward(market, "sma_cross", {}, 750, 250, workers=1)


def test_run_when_not_positive_then_config_error() -> None:
    market = SyntheticMarket(1, 600, seed=1).to_market()

    with pytest.raises(ConfigError, match="test must be a positive"):
        run_walk_forward(market, "sma_cross", {}, 100, 0, workers=1)


def test_run_when_unknown_parameter_then_strategy_error_before_any_segment() -> None:
    market = SyntheticMarket(1, 600, seed=1).to_market()

    with pytest.raises(StrategyError, match="no parameter speed"):
        run_walk_forward(market, "sma_cross", {"speed": 3}, 100, 100)


# -- what each segment sees -------------------------------------------------------------


def test_run_when_segments_then_each_sees_its_train_bars_and_window_and_nothing_later(
    registered: None,
) -> None:
    market = SyntheticMarket(1, 520, seed=2).to_market()
    config = BacktestConfig(check_lookahead=False)

    walked = run_walk_forward(market, "test_recorder", {}, 200, 100, config, RISK, workers=1)

    expected = [
        (market.time_of(s.train_start), market.time_of(s.test_stop - 1), 200 + s.bars)
        for s in walked.segments
    ]
    assert expected == SEEN
    assert [s.bars for s in walked.segments] == [100, 100, 100, 20]


def test_run_when_future_poisoned_then_segments_ending_before_it_are_unchanged(
    registered: None,
) -> None:
    # A strategy that reads the next close: it can only stay unchanged by the poison if
    # its segment never reaches past its own window.
    market = SyntheticMarket(1, 900, seed=3).to_market()
    poisoned = poison_after(market, 499, seed=9)  # from the first bar after segment 2
    config = BacktestConfig(check_lookahead=False)

    real = run_walk_forward(market, "test_next_close", {}, 300, 100, config, RISK, workers=1)
    fake = run_walk_forward(poisoned, "test_next_close", {}, 300, 100, config, RISK, workers=1)

    assert _same(real.targets[:500], fake.targets[:500])
    assert not _same(real.targets[500:], fake.targets[500:])
    assert real.segments[:2] == fake.segments[:2]
    # Inside its window the cheat still peeks; at the window's last bar there is nothing.
    assert np.isnan(real.targets[[399, 499, 599]]).all()
    assert not np.isnan(real.targets[[398, 498, 598]]).any()


def test_run_when_segments_then_joined_targets_are_each_segments_own_targets() -> None:
    market = SyntheticMarket(2, 800, seed=4).to_market()
    params = {"lookback": 40, "rebalance": 7}

    walked = run_walk_forward(market, "momentum", params, 250, 120, workers=1)

    assert np.isnan(walked.targets[:250]).all()
    for segment in walked.segments:
        own = make_strategy("momentum", params).targets(
            market.select(segment.train_start, segment.test_stop).history()
        )
        assert _same(walked.targets[segment.test_start : segment.test_stop], own[250:])
    assert _same(walked.backtest.targets, walked.targets[250:])


def test_run_when_explaining_strategy_then_decisions_are_the_test_windows_only(
    registered: None,
) -> None:
    market = SyntheticMarket(1, 450, seed=5).to_market()

    walked = run_walk_forward(market, "test_recorder", {}, 150, 100, workers=1)

    decisions = walked.backtest.decisions
    first, last = market.time_of(150), market.time_of(449)
    assert decisions
    assert all(first <= d.time <= last for d in decisions)
    # Every test window decides on its own bars 0, 10, 20, ... (the recorder's rule).
    starts = [market.time_of(s.test_start) for s in walked.segments]
    assert {d.time for d in decisions} >= set(starts)
    assert len(decisions) == len({(d.time, d.symbol) for d in decisions})


def test_run_when_segment_looks_ahead_and_check_on_then_refused(registered: None) -> None:
    market = SyntheticMarket(1, 600, seed=6).to_market()

    with pytest.raises(StrategyError, match="looks ahead"):
        run_walk_forward(market, "test_last_bar_signs", {}, 200, 100, workers=1)
    checked_off = BacktestConfig(check_lookahead=False)
    walked = run_walk_forward(
        market, "test_last_bar_signs", {}, 200, 100, checked_off, RISK, workers=1
    )
    assert len(walked.segments) == 4


# -- the joined run ---------------------------------------------------------------------


def test_run_when_stateless_strategy_then_trades_as_the_full_history_run_does_out_of_sample() -> (
    None
):
    # sma_cross at a bar depends only on the last `slow` bars, so with train >= slow a
    # segment's fresh strategy instructs exactly as one run over all history does. The
    # joined run then trades at the same times, prices and directions (sizes differ: the
    # full run has traded for longer and has other equity).
    market = _sp500()
    config = BacktestConfig(lot_size=0.001)
    strategy = make_strategy("sma_cross", {"fast": 10, "slow": 40})

    walked = run_walk_forward(market, "sma_cross", {"fast": 10, "slow": 40}, 300, 250, config, RISK)
    full = run_backtest(market, strategy, config, RISK)

    first = walked.first_test_bar
    assert _same(walked.targets[first:], full.targets[first:])

    def shape(trades: list) -> list[tuple]:
        return [
            (t.entry_time, t.exit_time, t.direction, t.entry_price, t.exit_price) for t in trades
        ]

    out_of_sample = [t for t in full.trades if t.entry_time >= market.time_of(first)]
    assert len(walked.backtest.trades) > 20
    assert shape(walked.backtest.trades) == shape(out_of_sample)


def test_run_when_joined_then_one_run_over_the_test_bars_with_the_strategy_and_config() -> None:
    market = SyntheticMarket(1, 700, seed=7).to_market()
    config = BacktestConfig(cash=50_000.0)

    walked = run_walk_forward(market, "sma_cross", {"fast": 3, "slow": 12}, 200, 150, config, RISK)

    result = walked.backtest
    assert result.market.n_bars == 500
    assert result.market.time_of(0) == market.time_of(200)
    assert result.strategy == make_strategy("sma_cross", {"fast": 3, "slow": 12})
    assert result.params == {"fast": 3, "slow": 12}
    assert result.config is config
    assert result.equity[0] == pytest.approx(50_000.0)


def test_run_when_segments_then_their_stats_add_up_to_the_joined_run() -> None:
    market = SyntheticMarket(1, 1000, seed=8).to_market()

    walked = run_walk_forward(
        market, "sma_cross", {"fast": 5, "slow": 20}, 250, 200, risk=RISK, workers=1
    )

    segments = walked.segments
    assert [s.test_start for s in segments] == [250, 450, 650, 850]
    assert all(a.test_stop == b.test_start for a, b in itertools.pairwise(segments))
    assert sum(s.bars for s in segments) == walked.backtest.market.n_bars
    stats = walked.backtest.stats
    assert math.prod(1 + s.total_return for s in segments) - 1 == pytest.approx(stats.total_return)
    assert sum(s.n_trades for s in segments) == stats.n_trades
    assert min(s.max_drawdown for s in segments) >= stats.max_drawdown - 1e-12
    assert all(math.isfinite(s.sharpe) for s in segments)
    first = walked.backtest.equity[199] / 10_000.0 - 1
    assert segments[0].total_return == pytest.approx(first)


def test_trade_segments_when_first_segments_only_then_the_joined_run_up_to_there() -> None:
    market = SyntheticMarket(1, 1000, seed=8).to_market()
    config = BacktestConfig()
    windows = WalkForwardSpec(250, 150).windows(market.n_bars)
    setup = SegmentSetup(market, "sma_cross", {"fast": 5, "slow": 20}, 250, config)
    parts = [explain_segment(setup, window) for window in windows]

    full = trade_segments(market, windows, parts, config, RISK)
    first_two = trade_segments(market, windows, parts[:2], config, RISK)

    walked = run_walk_forward(
        market, "sma_cross", {"fast": 5, "slow": 20}, 250, 150, config, RISK, workers=1
    )
    assert np.array_equal(full.equity, walked.backtest.equity)
    assert first_two.market.n_bars == windows[1][1] - windows[0][0]
    assert np.array_equal(first_two.equity, full.equity[: first_two.market.n_bars])


def test_run_when_pool_then_same_result_as_in_process_and_progress_per_segment() -> None:
    market = SyntheticMarket(3, 900, seed=9).to_market()
    ticks: list[None] = []

    alone = run_walk_forward(market, "momentum", {"lookback": 30}, 200, 100, workers=1)
    pooled = run_walk_forward(
        market,
        "momentum",
        {"lookback": 30},
        200,
        100,
        workers=2,
        progress=lambda: ticks.append(None),
    )

    assert len(ticks) == len(pooled.segments) == 7
    assert _same(pooled.targets, alone.targets)
    assert np.array_equal(pooled.backtest.equity, alone.backtest.equity)
    assert pooled.segments == alone.segments


def test_run_when_stream_mode_then_same_targets_as_batch() -> None:
    market = SyntheticMarket(1, 400, seed=10).to_market()
    params = {"fast": 4, "slow": 9}

    batch = run_walk_forward(market, "sma_cross", params, 100, 100, workers=1)
    stream = run_walk_forward(
        market, "sma_cross", params, 100, 100, BacktestConfig(mode="stream"), RISK, workers=1
    )

    assert _same(stream.targets, batch.targets)
    assert stream.backtest.config.mode == "stream"


def test_to_dict_when_segments_then_spec_and_bounds_as_json() -> None:
    market = SyntheticMarket(1, 500, seed=11).to_market()

    data = run_walk_forward(market, "sma_cross", {}, 300, 150, workers=1).to_dict()

    assert (data["train"], data["test"]) == (300, 150)
    assert [(s["test_start_bar"], s["test_stop_bar"]) for s in data["segments"]] == [
        (300, 450),
        (450, 500),
    ]
    assert data["segments"][1]["test_start"] == market.time_of(450).isoformat()
    assert data["segments"][0]["train_start_bar"] == 0


def test_report_when_walk_forward_then_windows_marked_and_segment_table() -> None:
    market = SyntheticMarket(1, 900, seed=12).to_market()
    walked = run_walk_forward(market, "sma_cross", {}, 300, 200, workers=1)

    html = render_walk_forward_report(walked)

    assert "Walk-forward segments (3)" in html
    # Windows 1 and 3 shaded, a line where each starts: on the equity and drawdown charts.
    assert html.count('"type":"rect"') == 2 * 2
    assert html.count('"type":"line"') == 2 * 3
    assert all(f'"text":"#{n}"' in html for n in (1, 2, 3))
    assert "walked forward" in html
    assert "train=300,test=200" in html
    assert f"<td>{walked.segments[2].bars:,}</td>" in html
