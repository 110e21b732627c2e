from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ffe.backtest.causality import batch_targets, stream_targets
from ffe.data import SyntheticMarket
from ffe.decide import available, make_strategy, parameters
from ffe.decide.indicators import sma
from ffe.domain import History, StrategyError
from ffe.domain.market import MarketData


def test_make_strategy_when_params_are_strings_then_converted_to_their_types() -> None:
    strategy = make_strategy("momentum", {"lookback": "20", "top": "0.5", "rebalance": "5.0"})

    assert parameters("momentum") == {"lookback": 126, "top": 0.2, "rebalance": 21}
    assert (strategy.lookback, strategy.top, strategy.rebalance) == (20, 0.5, 5)  # type: ignore[attr-defined]


def test_make_strategy_when_unknown_param_then_error_lists_the_real_ones() -> None:
    with pytest.raises(StrategyError, match=r"no parameter fats.*fast, slow"):
        make_strategy("sma_cross", {"fats": 3})


def test_make_strategy_when_unknown_name_then_error_lists_available() -> None:
    with pytest.raises(StrategyError, match="buy_and_hold, ensemble, momentum, sma_cross"):
        make_strategy("smacross")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("sma_cross", {"fast": 20, "slow": 10}, "fast < slow"),
        ("sma_cross", {"fast": 2.5}, "must be int"),
        ("momentum", {"top": 0}, "0 < top <= 1"),
    ],
)
def test_make_strategy_when_params_invalid_then_error_says_what_to_fix(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(StrategyError, match=message):
        make_strategy(name, params)


def test_sma_cross_when_fast_crosses_then_instruction_on_that_bar_only(make_market) -> None:
    # fast=1 is the close itself: it crosses the 3-bar mean upward at bar 5, downward at
    # bar 8. At bar 3 it leaves the mean from exactly equal: touching is not crossing.
    close = [10, 10, 10, 9, 9, 12, 12, 13, 8, 8]
    targets = make_strategy("sma_cross", {"fast": 1, "slow": 3}).targets(
        make_market(close).history()
    )

    assert np.flatnonzero(~np.isnan(targets[:, 0])).tolist() == [5, 8]
    assert targets[[5, 8], 0].tolist() == [1.0, -1.0]


def test_buy_and_hold_when_symbol_starts_late_then_bought_on_its_first_bar(make_market) -> None:
    close = np.array([[1.0, np.nan], [1.1, np.nan], [1.2, 5.0], [1.3, 5.1]])
    targets = make_strategy("buy_and_hold").targets(make_market(close).history())

    assert targets[0].tolist() == [0.5, pytest.approx(np.nan, nan_ok=True)]
    assert targets[2, 1] == 0.5
    assert np.isnan(targets[1]).all()
    assert np.isnan(targets[3]).all()


def test_momentum_when_rebalancing_then_holds_the_top_fraction_equally() -> None:
    market = SyntheticMarket(10, 200, seed=3).to_market()
    targets = make_strategy("momentum", {"lookback": 20, "top": 0.3, "rebalance": 10}).targets(
        market.history()
    )
    rows = np.flatnonzero(~np.isnan(targets).all(axis=1))

    assert rows.tolist() == list(range(20, 200, 10))
    row = targets[rows[0]]
    past_return = market.close[20] / market.close[0] - 1
    assert set(np.flatnonzero(row > 0)) == set(np.argsort(-past_return)[:3])
    assert row.sum() == pytest.approx(1.0)


# The ensemble refits its models for every prefix it is given, so streaming it bar by bar is
# quadratic; its look-ahead is checked by poisoning instead (tests/unit/backtest).
@pytest.mark.parametrize("name", [name for name in available() if name != "ensemble"])
def test_every_builtin_when_streamed_then_same_targets_as_batch(name: str) -> None:
    # Streaming hands the strategy only the bars up to each one: if batch differs, the
    # batch computation used the future.
    market = SyntheticMarket(4, 160, seed=11).to_market()
    if name == "binary_edge":  # it trades binary contracts, whose prices lie in [0, 1]
        market = _as_probabilities(market)
    params = {"lookback": 30, "rebalance": 7} if name == "momentum" else {}
    strategy = make_strategy(name, params)

    batch = batch_targets(strategy, market)
    stream = stream_targets(strategy, market)

    np.testing.assert_array_equal(batch, stream)
    assert not np.isnan(batch).all()


def _as_probabilities(market: MarketData) -> MarketData:
    """``market`` with prices scaled into (0, 1), like the YES prices of binary contracts."""
    scale = 1.5 * np.nanmax(market.high)
    prices = {f: getattr(market, f) / scale for f in ("open", "high", "low", "close")}
    return MarketData(
        market.symbols, market.times, volume=market.volume, timeframe=market.timeframe, **prices
    )


def test_history_when_given_to_strategy_then_has_no_future_bars(make_market) -> None:
    market = make_market([1.0, 2.0, 3.0, 4.0])
    history = History(market, 2)

    assert history.close[:, 0].tolist() == [1.0, 2.0]
    assert len(history.times) == 2
    with pytest.raises(ValueError, match="read-only"):
        history.close[0, 0] = 99.0


@pytest.mark.parametrize("window", [1, 3, 20])
def test_sma_when_compared_with_pandas_then_equal_bit_for_bit(window: int) -> None:
    values = SyntheticMarket(3, 500, seed=9).to_market().close.copy()
    values[:7, 1] = np.nan  # a symbol that starts late
    values[100, 2] = np.nan  # and a gap

    ours = sma(values, window)

    expected = pd.DataFrame(values).rolling(window).mean().to_numpy()
    np.testing.assert_array_equal(ours, expected)
