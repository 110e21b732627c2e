"""A finished run's summary: against buy and hold, drawdown, trades, what to try next."""

from __future__ import annotations

import pytest

from ffe.backtest.benchmark import Costs
from ffe.backtest.summary import RunSummary

STATS = {
    "total_return": 0.48,
    "buy_and_hold_return": 1.21,
    "max_drawdown": -0.2576,
    "n_trades": 7,
    "win_rate": 2 / 7,
}


def _summary(**changes: object) -> RunSummary:
    stats = {**STATS, **changes}
    return RunSummary.of(
        stats,
        strategy="sma_cross",
        symbols=["SP500"],
        costs=Costs(0.001, 2.0),
        params={"fast": 50, "slow": 200},
        start="2010-01-01",
    )


def test_summary_when_behind_buy_and_hold_then_says_so_with_costs() -> None:
    summary = _summary()
    assert not summary.beat_benchmark
    assert summary.benchmark_return == pytest.approx(2.21 / (1.0002 * 1.001) - 1)
    lines = summary.lines()
    assert lines[0] == "replay finished: sma_cross on SP500 did not beat buy and hold"
    assert "+48.0%" in lines[1]
    assert "buy and hold +120.7%" in lines[1]
    assert "-25.8%" in lines[2]
    assert "7 (29% won)" in lines[3]


def test_summary_when_ahead_then_beat() -> None:
    assert _summary(total_return=2.0).lines()[0].endswith(" beat buy and hold")


def test_summary_when_no_trade_then_no_win_rate() -> None:
    summary = _summary(n_trades=0, win_rate=None)
    assert summary.win_rate is None
    assert "no closed trade" in summary.lines()[3]


def test_summary_next_steps_when_made_then_three_runnable_commands() -> None:
    steps = _summary().next_steps
    assert len(steps) == 3
    assert all(step.startswith("ffe ") for step in steps)
    assert steps[0].startswith("ffe tune --strategy sma_cross --symbol SP500")
    assert "--param fast=50 --param slow=200 --symbol NASDAQ --start 2010-01-01" in steps[1]
    assert "--strategy ensemble" in steps[2]
    assert "--walk-forward" in steps[2]


def test_summary_as_dict_when_read_then_has_the_numbers() -> None:
    data = _summary().as_dict()
    assert data["trades"] == 7
    assert data["beat_benchmark"] is False
    assert data["next_steps"] == list(_summary().next_steps)
