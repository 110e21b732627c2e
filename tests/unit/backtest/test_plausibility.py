"""Statistics too good to be true are told, with their usual cause; others are not."""

from __future__ import annotations

import pytest

from ffe.backtest.plausibility import implausible
from ffe.domain.timeframe import Timeframe
from ffe.portfolio.stats import Stats

DAILY = Timeframe.parse("1d")


def stats(sharpe: float, total_return: float) -> Stats:
    times = {"start": "2020-01-01T00:00:00+00:00", "end": "2021-01-01T00:00:00+00:00"}
    return Stats.from_dict({**times, "sharpe": sharpe, "total_return": total_return})


@pytest.mark.parametrize(("sharpe", "total_return"), [(5.0, 99.0), (-8.0, 0.5), (1.2, 3.0)])
def test_implausible_when_within_bounds_then_nothing(sharpe: float, total_return: float) -> None:
    assert implausible(stats(sharpe, total_return), DAILY) == []


def test_implausible_when_sharpe_above_5_on_daily_bars_then_warned_with_cause() -> None:
    (warning,) = implausible(stats(5.01, 0.5), DAILY)

    assert warning.startswith("implausible Sharpe ratio 5.01 on 1d bars (above 5)")
    assert "reading future data" in warning
    assert "loads the data file itself" in warning


def test_implausible_when_sharpe_above_5_on_hourly_bars_then_not_the_daily_rule() -> None:
    assert implausible(stats(6.0, 0.5), Timeframe.parse("1h")) == []


def test_implausible_when_equity_grew_over_100x_then_warned() -> None:
    (warning,) = implausible(stats(1.0, 150.0), DAILY)

    assert warning.startswith("implausible total return: equity grew 151x (above 100x)")
