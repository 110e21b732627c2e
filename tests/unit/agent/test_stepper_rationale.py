"""Each decision a plain strategy makes in the agent carries a rationale: sma_cross says which
averages crossed, at what values, and what it does; a strategy with no words of its own says
what it asked for and that it gives no reasons."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ffe.agent.stepper import StrategyStepper
from ffe.data import load_market
from ffe.data.bundled import BundledBarSource
from ffe.decide.strategy import make_strategy
from ffe.domain.market import History, MarketData


@pytest.fixture(scope="module")
def market() -> MarketData:
    return load_market(BundledBarSource(), ["SP500"], start="2010-01-01", end="2012-12-31")


def _decisions(strategy_name: str, params: dict, market: MarketData) -> list:
    stepper = StrategyStepper(make_strategy(strategy_name, params))
    found = []
    for n in range(2, market.n_bars + 1):
        found.extend((n, d) for d in stepper.step(History(market, n))[1])
    return found


def test_sma_cross_decision_when_made_then_names_the_cross_and_its_values(market) -> None:
    found = _decisions("sma_cross", {"fast": 10, "slow": 20}, market)
    assert len(found) > 5
    n, decision = found[0]
    close = market.close[:n, 0]
    fast, slow = close[-10:].mean(), close[-20:].mean()
    way = "above" if decision.target > 0 else "below"
    assert decision.rationale.startswith(f"SMA(10) {fast:,.2f} crossed {way} SMA(20) {slow:,.2f}")
    assert (fast > slow) == (decision.target > 0)
    for _, each in found:
        side = "long" if each.target > 0 else "short"
        assert re.search(rf"go {side}, [+-]100% of equity$", each.rationale), each.rationale


def test_decision_when_strategy_gives_no_reasons_then_says_so(market) -> None:
    found = _decisions("momentum", {"lookback": 20, "top": 1.0, "rebalance": 21}, market)
    assert found
    assert all("states targets only, no reasons" in d.rationale for _, d in found)
    assert all(np.isfinite(d.target) for _, d in found)
