"""A live agent asks a strategy that says how far back it looks (``memory()``) about a bounded
window of bars; its instruction on every bar is the one it gives for the whole history. The
strategies that do not say keep the whole history, and for momentum that is needed."""

from __future__ import annotations

import numpy as np
import pytest

from ffe.agent.stepper import StrategyStepper, stepper_for
from ffe.data import load_market
from ffe.data.bundled import BundledBarSource
from ffe.decide.strategy import BoundedStrategy, make_strategy
from ffe.domain.market import History, MarketData


@pytest.fixture(scope="module")
def market() -> MarketData:
    return load_market(BundledBarSource(), ["SP500", "NASDAQ"], start="2010-01-01")


def _rows(stepper: StrategyStepper, market: MarketData, first: int) -> np.ndarray:
    return np.array([stepper.step(History(market, n))[0] for n in range(first, market.n_bars + 1)])


@pytest.mark.parametrize(("fast", "slow"), [(2, 5), (10, 20), (50, 200)])
def test_sma_cross_windowed_when_every_bar_then_same_instruction_as_whole_history(
    market, fast, slow
):
    strategy = make_strategy("sma_cross", {"fast": fast, "slow": slow})
    windowed = StrategyStepper(strategy, window=10)
    whole = strategy.targets(market.history())  # causal: row i is the step at bar i

    rows = _rows(windowed, market, 1)

    assert isinstance(strategy, BoundedStrategy)
    assert windowed.window == 3 * (slow + 1)  # at least three times its memory
    np.testing.assert_array_equal(rows, whole)
    assert np.isfinite(rows).sum() > 10  # it did decide, many times


def test_window_when_history_grows_then_strategy_sees_at_most_the_window():
    seen: list[int] = []
    strategy = make_strategy("sma_cross", {"fast": 2, "slow": 5})

    class Spy:
        name = "sma_cross"

        def warmup(self) -> int:
            return strategy.warmup()

        def memory(self) -> int:
            return strategy.memory()  # type: ignore[attr-defined]

        def targets(self, history: History) -> np.ndarray:
            seen.append(len(history))
            return strategy.targets(history)

    market = load_market(BundledBarSource(), ["SP500"], start="2015-01-01")
    stepper = StrategyStepper(Spy(), window=40)  # type: ignore[arg-type]

    _rows(stepper, market, 1)

    assert max(seen) == 40
    assert seen[:3] == [1, 2, 3]


@pytest.mark.parametrize("name", ["momentum", "buy_and_hold", "ensemble"])
def test_strategies_without_memory_when_window_set_then_whole_history(name):
    stepper = stepper_for(make_strategy(name), window=50)

    assert getattr(stepper, "window", None) is None


def test_momentum_on_a_window_would_rebalance_on_other_bars_so_it_keeps_the_whole_history(market):
    strategy = make_strategy("momentum", {"lookback": 20, "rebalance": 7})
    whole = strategy.targets(market.history())
    tail = 61  # not a multiple of the rebalance period
    windowed = np.array(
        [strategy.targets(History(market, n).tail(tail))[-1] for n in range(tail, market.n_bars)]
    )

    assert not np.array_equal(windowed, whole[tail - 1 : -1], equal_nan=True)
