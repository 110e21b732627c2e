from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import pytest

from ffe.backtest.lookahead import check_lookahead, cut_points, poison_after
from ffe.data import BundledBarSource, load_market
from ffe.decide import available, make_strategy
from ffe.decide.indicators import sma
from ffe.decide.strategy import Explained
from ffe.domain import FIELDS, ConfigError, Decision, History, MarketData, StrategyError
from ffe.domain.market import utc_datetime

# Parameters that keep a strategy fast enough for this check; a strategy not listed runs
# with its registry defaults.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    # A statistical, an ML and a volatility model on a short window: every stage of the
    # decision (forecasts, Hedge weights, recalibration, sizing) runs, in seconds. Each
    # forecaster on its own is poisoned in tests/unit/forecast/test_rolling.py.
    "ensemble": {
        "models": "naive,auto_ets,lightgbm,garch",
        "window": 250,
        "refit_every": 50,
        "threshold": 0.5,
        "min_outcomes": 20,
        "workers": 1,
    },
}


@functools.cache
def _sp500(bars: int = 1200) -> MarketData:
    """The last ``bars`` bundled S&P 500 bars: real data, short enough for slow strategies."""
    market = load_market(BundledBarSource(), ["SP500"])
    return market.select(market.n_bars - bars, market.n_bars)


def _times(history: History) -> list[datetime]:
    return [utc_datetime(int(t)) for t in history.times.view(np.int64)]


@dataclass(frozen=True)
class PeeksAtNextClose:
    """Cheats: its target at bar t is the return from close t to close t + 1."""

    name: ClassVar[str] = "peeks_next_close"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        close = history.close
        out = np.full(close.shape, np.nan)
        out[:-1] = (close[1:] / close[:-1] - 1.0) * 10.0
        return out


@dataclass(frozen=True)
class NormalisesByFullMax:
    """Cheats: scales every bar by the highest close of the whole sample."""

    name: ClassVar[str] = "full_max"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        close = history.close
        return close / np.nanmax(close, axis=0)


@dataclass(frozen=True)
class HonestTargetsLeakyRationale:
    """Honest targets (an SMA crossover) whose decisions quote the last close of the data."""

    name: ClassVar[str] = "leaky_rationale"

    def warmup(self) -> int:
        return 20

    def targets(self, history: History) -> np.ndarray:
        return self.explain(history).targets

    def explain(self, history: History) -> Explained:
        close = history.close
        above = sma(close, 5) > sma(close, 20)
        out = np.where(above, 1.0, -1.0)
        out[:20] = np.nan
        times = _times(history)
        last = float(close[-1, 0])
        decisions = tuple(
            Decision(times[i], history.symbols[0], float(out[i, 0]), 0.5, f"last close {last:.2f}")
            for i in range(20, len(history), 50)
        )
        return Explained(out, decisions)


@pytest.mark.parametrize("name", available())
def test_check_lookahead_when_registered_strategy_then_nothing_before_a_cut_changes(
    name: str,
) -> None:
    market = _sp500()

    report = check_lookahead(lambda: make_strategy(name, FAST_PARAMS.get(name)), market, cuts=3)

    assert len(report.cuts) == 3
    assert report.passed, report.message()


def test_check_lookahead_when_target_uses_next_close_then_each_cut_fails_at_the_cut_bar() -> None:
    market = _sp500(600)

    report = check_lookahead(PeeksAtNextClose(), market, cuts=3)

    assert not report.passed
    for cut in report.cuts:
        assert cut.change is not None
        assert (cut.change.kind, cut.change.bar, cut.change.symbol) == ("target", cut.cut, "SP500")
        assert cut.change.time == market.time_of(cut.cut)
    first = report.first_failure
    assert first is not None
    assert first.change is not None
    assert f"bar {first.change.bar}" in report.message()
    assert "looks ahead" in report.message()


def test_check_lookahead_when_normalised_by_full_sample_max_then_fails_from_the_first_bar(
    make_market,
) -> None:
    market = make_market(np.linspace(100.0, 200.0, 300))

    report = check_lookahead(NormalisesByFullMax, market, cuts=2)

    assert [cut.passed for cut in report.cuts] == [False, False]
    assert all(cut.change is not None and cut.change.bar == 0 for cut in report.cuts)


def test_check_lookahead_when_only_a_rationale_looks_ahead_then_the_decision_is_named() -> None:
    market = _sp500(400)

    report = check_lookahead(HonestTargetsLeakyRationale(), market, cuts=[200])

    [cut] = report.cuts
    assert cut.change is not None
    assert cut.change.kind == "decision"
    assert cut.change.bar == 20  # the first decision already quotes the future
    assert "last close" in cut.change.real


def test_check_lookahead_when_given_a_factory_then_each_run_gets_a_fresh_strategy() -> None:
    built: list[object] = []

    def factory() -> Any:
        strategy = make_strategy("sma_cross", {"fast": 5, "slow": 10})
        built.append(strategy)
        return strategy

    calls: list[None] = []
    report = check_lookahead(factory, _sp500(300), cuts=4, progress=lambda: calls.append(None))

    assert report.passed
    assert len(built) == 5  # one for the real bars, one per cut
    assert len({id(strategy) for strategy in built}) == 5
    assert len(calls) == 5


def test_check_lookahead_when_strategy_fails_on_garbage_then_strategy_error_says_poisoned(
    make_market,
) -> None:
    @dataclass(frozen=True)
    class Fragile:
        name: ClassVar[str] = "fragile"

        def warmup(self) -> int:
            return 1

        def targets(self, history: History) -> np.ndarray:
            if np.nanmax(history.close) > 150.0:
                raise ValueError("prices out of range")
            return np.full(history.close.shape, np.nan)

    with pytest.raises(StrategyError, match="poisoned"):
        check_lookahead(Fragile(), make_market(np.full(100, 100.0)), cuts=[50])


def test_check_lookahead_when_cut_is_the_last_bar_then_refused(make_market) -> None:
    with pytest.raises(ConfigError, match="outside"):
        check_lookahead(make_strategy("sma_cross"), make_market(np.full(50, 1.0)), cuts=[49])


def test_check_lookahead_when_no_cut_fits_then_refused_not_passed(make_market) -> None:
    with pytest.raises(ConfigError, match="at least one cut and 2 bars"):
        check_lookahead(make_strategy("sma_cross"), make_market([1.0]), cuts=3)


def test_poison_after_when_cut_then_every_value_after_it_changes_and_none_before() -> None:
    market = _sp500(500)
    cut = 199

    poisoned = poison_after(market, cut, seed=3)

    assert poisoned.n_bars == market.n_bars
    assert np.array_equal(poisoned.times, market.times)
    for name in FIELDS:
        real, garbage = getattr(market, name), getattr(poisoned, name)
        assert np.array_equal(garbage[: cut + 1], real[: cut + 1]), name
        assert (garbage[cut + 1 :] != real[cut + 1 :]).all(), name
        assert np.isfinite(garbage).all(), name
        assert (garbage[cut + 1 :] > 0).all(), name
    assert (poisoned.low <= np.minimum(poisoned.open, poisoned.close)).all()
    assert (poisoned.high >= np.maximum(poisoned.open, poisoned.close)).all()


def test_poison_after_when_flat_prices_and_missing_bars_then_still_all_changed() -> None:
    n_bars = 40
    close = np.full((n_bars, 2), 10.0)
    close[30:, 1] = np.nan  # the second symbol stops trading
    times = np.datetime64("2021-01-01", "ns") + np.arange(n_bars) * np.timedelta64(1, "D")
    ones = np.ones(close.shape)
    market = MarketData(("A", "B"), times, close, close, close, close, ones)

    poisoned = poison_after(market, 20)

    for name in FIELDS:
        after = getattr(poisoned, name)[21:]
        assert (after != getattr(market, name)[21:]).all(), name
        assert np.isfinite(after).all(), name


def test_poison_after_when_seeds_differ_then_garbage_differs_but_each_seed_repeats() -> None:
    market = _sp500(300)

    first, again, other = (poison_after(market, 100, seed=s) for s in (1, 1, 2))

    assert np.array_equal(first.close, again.close)
    assert not np.array_equal(first.close, other.close)


@pytest.mark.parametrize(
    ("n_bars", "warmup", "count", "expected"),
    [
        (1000, 100, 3, [399, 699, 998]),
        (1000, 0, 1, [998]),
        (10, 50, 3, [8]),  # warm-up longer than the data: one cut on the second-last bar
        (1, 0, 3, []),
        (100, 10, 0, []),
    ],
)
def test_cut_points_when_spread_then_after_warmup_and_before_the_last_bar(
    n_bars: int, warmup: int, count: int, expected: list[int]
) -> None:
    assert cut_points(n_bars, warmup, count) == expected
