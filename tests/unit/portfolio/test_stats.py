"""Performance statistics against small hand-computed examples."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffe.domain.orders import Trade
from ffe.domain.timeframe import Timeframe
from ffe.portfolio.stats import Stats, compute_stats, drawdown_series, periods_per_year

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def daily_times(n: int, start: str = "2024-01-01") -> np.ndarray:
    return np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "D")


def trade(pnl: float, entry: float = 100.0, exit_: float = 110.0, quantity: float = 1.0) -> Trade:
    return Trade("X", START, START + timedelta(days=1), entry, exit_, quantity, pnl)


def stats_of(
    equity: list[float],
    trades: tuple[Trade, ...] = (),
    exposure: np.ndarray | None = None,
    benchmark: np.ndarray | None = None,
    ppy: float = 252.0,
) -> Stats:
    values = np.array(equity, dtype=np.float64)
    return compute_stats(
        times=daily_times(len(values)),
        equity=values,
        trades=trades,
        exposure=np.zeros(len(values), dtype=bool) if exposure is None else exposure,
        benchmark=benchmark,
        periods_per_year=ppy,
    )


def test_max_drawdown_when_peak_then_dip_then_new_high_then_depth_and_peak_to_recovery():
    stats = stats_of([100, 110, 99, 120])

    assert stats.max_drawdown == pytest.approx(-0.1)
    assert stats.max_drawdown_duration == timedelta(days=2)  # bar 1 (peak) to bar 3 (recovery)
    assert stats.peak_equity == 120
    assert stats.total_return == pytest.approx(0.2)


def test_max_drawdown_duration_when_still_underwater_at_end_then_counts_to_last_bar():
    stats = stats_of([100, 90, 101, 100, 100, 100, 100, 100, 98])

    # The ongoing spell from the peak at bar 2 to the last bar (6 days) beats the first (2 days).
    assert stats.max_drawdown_duration == timedelta(days=6)
    assert stats.max_drawdown == pytest.approx(-0.1)


def test_max_drawdown_duration_when_only_last_bar_is_underwater_then_one_bar():
    stats = stats_of([100, 101, 100.5])

    assert stats.max_drawdown_duration == timedelta(days=1)


def test_sharpe_sortino_volatility_match_direct_formulas():
    rng = np.random.default_rng(7)
    equity = list(1000 * np.cumprod(1 + rng.normal(0.001, 0.02, 200)))
    returns = np.diff(np.log(equity))
    simple = np.expm1(returns)  # the same simple returns, reached another way
    std = math.sqrt(sum((x - simple.mean()) ** 2 for x in simple) / (len(simple) - 1))
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in simple) / len(simple))

    stats = stats_of(equity, ppy=365.0)

    assert stats.sharpe == pytest.approx(simple.mean() / std * math.sqrt(365), rel=1e-9)
    assert stats.sortino == pytest.approx(simple.mean() / downside * math.sqrt(365), rel=1e-9)
    assert stats.annual_volatility == pytest.approx(std * math.sqrt(365), rel=1e-9)


def test_cagr_and_calmar_when_doubling_over_a_year():
    times = np.array(["2020-01-01", "2020-07-01", "2020-12-31T06:00"], dtype="datetime64[ns]")
    equity = np.array([100.0, 80.0, 200.0])

    stats = compute_stats(
        times=times,
        equity=equity,
        trades=(),
        exposure=np.ones(3, dtype=bool),
        benchmark=None,
        periods_per_year=252.0,
    )

    assert stats.duration == timedelta(days=365.25)
    assert stats.cagr == pytest.approx(1.0)
    assert stats.calmar == pytest.approx(1.0 / 0.2)
    assert stats.start == datetime(2020, 1, 1, tzinfo=UTC)
    assert stats.end.tzinfo is UTC


def test_trade_stats_on_three_trades():
    trades = (
        trade(30.0, 100.0, 110.0, 3.0),  # long, +10 %
        trade(-10.0, 50.0, 55.0, -2.0),  # short against a rise, -10 %
        trade(10.0, 200.0, 190.0, -1.0),  # short into a fall, +5 %
    )

    stats = stats_of([100, 101, 102], trades=trades)

    assert stats.n_trades == 3
    assert stats.win_rate == pytest.approx(2 / 3)
    assert stats.profit_factor == pytest.approx(40 / 10)
    assert stats.expectancy == pytest.approx(10.0)
    assert stats.best_trade == pytest.approx(0.10)
    assert stats.worst_trade == pytest.approx(-0.10)
    assert stats.avg_trade_return == pytest.approx((0.10 - 0.10 + 0.05) / 3)


def test_profit_factor_when_no_losing_trade_then_inf():
    stats = stats_of([100, 101], trades=(trade(5.0), trade(0.0)))

    assert stats.profit_factor == math.inf
    assert stats.as_dict()["profit_factor"] == "inf"


def test_no_trades_then_trade_stats_are_nan():
    stats = stats_of([100, 105, 103])

    assert stats.n_trades == 0
    for name in ("win_rate", "profit_factor", "expectancy", "avg_trade_return", "best_trade"):
        assert math.isnan(getattr(stats, name)), name


def test_flat_equity_then_ratios_are_nan_and_drawdown_zero():
    stats = stats_of([100.0] * 10)

    assert math.isnan(stats.sharpe)
    assert math.isnan(stats.sortino)
    assert math.isnan(stats.calmar)
    assert stats.annual_volatility == 0.0
    assert stats.max_drawdown == 0.0
    assert stats.max_drawdown_duration == timedelta(0)
    assert stats.total_return == 0.0


def test_single_bar_then_undefined_values_are_nan():
    stats = stats_of([100.0])

    assert math.isnan(stats.cagr)
    assert math.isnan(stats.sharpe)
    assert stats.duration == timedelta(0)


def test_exposure_counts_bars_with_any_position():
    exposure = np.array([0.0, 0.5, -0.0, 1.0, 0.0])

    stats = stats_of([100, 100, 100, 100, 100], exposure=exposure)

    assert stats.exposure == pytest.approx(2 / 5)


def test_buy_and_hold_skips_leading_nan():
    benchmark = np.array([np.nan, np.nan, 50.0, 60.0, 75.0])

    stats = stats_of([100, 100, 100, 100, 100], benchmark=benchmark)

    assert stats.buy_and_hold_return == pytest.approx(0.5)
    assert math.isnan(stats_of([100, 101]).buy_and_hold_return)


def test_as_dict_is_json_safe():
    stats = stats_of([100, 110, 99, 120])

    data = stats.as_dict()
    text = json.dumps(data, allow_nan=False)

    assert data["max_drawdown_duration"] == pytest.approx(2.0)
    assert data["start"] == "2024-01-01T00:00:00+00:00"
    assert data["win_rate"] is None
    assert data["n_trades"] == 0
    assert json.loads(text)["final_equity"] == 120.0


def test_compute_stats_when_lengths_differ_then_value_error():
    with pytest.raises(ValueError, match="exposure has 2 values"):
        compute_stats(
            times=daily_times(3),
            equity=np.ones(3),
            trades=(),
            exposure=np.ones(2),
            benchmark=None,
            periods_per_year=252.0,
        )


def test_periods_per_year_daily_without_weekends_then_252():
    business_days = np.array(
        ["2024-01-05", "2024-01-08", "2024-01-09", "2024-01-12"], dtype="datetime64[ns]"
    )

    assert periods_per_year(business_days, Timeframe.parse("1d")) == 252.0


def test_periods_per_year_daily_with_weekend_bars_then_365():
    assert periods_per_year(daily_times(7), Timeframe.parse("1d")) == 365.0


def test_periods_per_year_intraday_counts_bars_per_day():
    # Seven hourly bars a weekday, Monday to Wednesday, plus a half day on Thursday.
    days = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[ns]")
    hours = np.timedelta64(13, "h") + np.arange(7) * np.timedelta64(1, "h")
    full = (days[:, None] + hours[None, :]).ravel()
    times = np.concatenate([full, np.datetime64("2024-01-04T13", "ns") + hours[:3]])

    assert periods_per_year(times, Timeframe.parse("1h")) == 7 * 252.0


def test_periods_per_year_intraday_crypto_and_weekly():
    hourly = np.datetime64("2024-01-06", "ns") + np.arange(48) * np.timedelta64(1, "h")

    assert periods_per_year(hourly, Timeframe.parse("1h")) == 24 * 365.0
    assert periods_per_year(daily_times(20)[::7], Timeframe.parse("1w")) == 52.0


def test_drawdown_series_is_fraction_below_running_peak():
    drawdown = drawdown_series(np.array([100.0, 110.0, 99.0, 120.0, 60.0]))

    np.testing.assert_allclose(drawdown, [0.0, 0.0, -0.1, 0.0, -0.5])


positive_equity = st.lists(
    st.floats(min_value=1e-3, max_value=1e9, allow_nan=False), min_size=1, max_size=60
)


@given(positive_equity)
def test_max_drawdown_is_between_minus_one_and_zero(values: list[float]):
    stats = stats_of(values)

    assert -1.0 <= stats.max_drawdown <= 0.0
    assert stats.max_drawdown == pytest.approx(float(drawdown_series(np.array(values)).min()))


@given(positive_equity)
def test_max_drawdown_of_non_decreasing_curve_is_zero(values: list[float]):
    stats = stats_of(sorted(values))

    assert stats.max_drawdown == 0.0
    assert stats.max_drawdown_duration == timedelta(0)
