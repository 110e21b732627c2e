"""Binary contracts settled at the end of a backtest, as a step applied to its result."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.settlement import settle_at_expiry
from ffe.decide.strategies.binary_edge import BinaryEdge
from ffe.domain.contracts import BinaryContract
from ffe.domain.errors import StrategyError
from ffe.domain.market import MarketData
from ffe.domain.timeframe import Timeframe

PRICES = [0.30, 0.32, 0.35, 0.40, 0.38, 0.44, 0.52, 0.55]
LAST_CLOSE = datetime(2026, 11, 1, 8, tzinfo=UTC)  # the end of the eighth hourly bar


def contract_market() -> MarketData:
    prices = np.array(PRICES)[:, None]
    return MarketData(
        ("KX-E-A",),
        np.datetime64("2026-11-01T00:00", "ns") + np.arange(len(PRICES)) * np.timedelta64(1, "h"),
        open=prices,
        high=prices,
        low=prices,
        close=prices,
        volume=np.ones_like(prices),
        timeframe=Timeframe.parse("1h"),
    )


def run(probability: float = 0.7):
    strategy = BinaryEdge(probability=probability, margin=0.05, stake=0.5)
    return run_backtest(contract_market(), strategy, BacktestConfig(cash=100.0))


def test_binary_edge_buys_yes_while_forecast_beats_price_and_exits_near_it() -> None:
    targets = BinaryEdge(probability=0.5, margin=0.1, stake=0.2).targets(
        contract_market().history()
    )[:, 0]

    assert targets[0] == 0.2  # 0.5 - 0.30 > 0.1: buy YES
    assert np.isnan(targets[1:3]).all()  # still wanted: no new instruction, no rebalancing
    assert np.isnan(targets[3])  # edge 0.10, between the bands: keep what is held
    assert targets[6] == 0.0  # 0.52 is within 0.05 of the forecast: flat
    assert np.isnan(targets[7])  # edge -0.05: not past -0.1, not within 0.05
    with pytest.raises(StrategyError, match=r"probability must lie in \[0, 1\]"):
        BinaryEdge(probability=1.5)


def test_settle_when_result_no_then_position_closes_at_zero() -> None:
    result = run()
    held = result.open_positions()["KX-E-A"]
    contract = BinaryContract("KX-E-A", "KX-E", LAST_CLOSE, "finalized", "no")

    settled, settlements = settle_at_expiry(result, {"KX-E-A": contract})

    assert held > 0
    assert [(s.quantity, s.price) for s in settlements] == [(held, 0.0)]
    assert settled.equity[-1] == pytest.approx(result.ledger.cash)
    assert settled.stats.total_return < result.stats.total_return
    assert result.open_positions() == {"KX-E-A": held}  # the original result is untouched


def test_settle_when_market_closes_after_the_run_or_unsettled_then_left_open() -> None:
    result = run()
    later = BinaryContract("KX-E-A", "KX-E", datetime(2026, 12, 1, tzinfo=UTC), "closed", "yes")
    open_market = BinaryContract("KX-E-A", "KX-E", LAST_CLOSE)

    for contract in (later, open_market):
        settled, settlements = settle_at_expiry(result, {"KX-E-A": contract})
        assert settled is result
        assert settlements == []
