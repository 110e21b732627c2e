"""Trade-for-trade parity of ffe's ``sma_cross`` with backtesting.py's canonical SmaCross.

Both engines see the same bars, fill market orders at the next bar's open, charge the same
commission and close the old position in the same fill that opens the new one
(``exclusive_orders=True``). Position sizes are not compared: backtesting.py sizes at the fill
from the open, ffe at the decision from the close, so only when and at what price each round
trip happened, and in which direction, must agree.

In the bundled S&P 500 bars two opens in five equal the previous close, so there a fill at
the wrong bar can still show the right price; the timestamps catch that, and on the NASDAQ and
synthetic bars, whose opens gap away from the previous close, the prices tell as well.

backtesting.py is AGPL: it is imported here, in a test, and never from ``src/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import pytest
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import SMA
from hypothesis import given, settings
from hypothesis import strategies as st

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import BundledBarSource, SyntheticMarket, load_market
from ffe.decide import make_strategy
from ffe.domain import MarketData
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution import FillModel
from ffe.risk import RiskEngine

# Both engines buy as many whole units as equity affords, but each sizes from a different
# price (see the module docstring). With little cash one of them could be unable to afford a
# single unit while the other can, and a trade would then exist in one list only. Ten million
# buys hundreds of units of the dearest bar in these data, even after a long losing streak,
# so every signal becomes a trade in both engines and the comparison is about timing and price.
CASH = 10_000_000.0
COMMISSION = 0.002
REL_TOL = 1e-9
NO_HALT = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)

# backtesting.py warns that the last position stays open (finalize_trades=False), which is
# the behaviour being matched.
pytestmark = pytest.mark.filterwarnings("ignore:Some trades remain open:UserWarning")


class SmaCross(Strategy):
    """backtesting.py's documented example strategy."""

    n1 = 10
    n2 = 20

    def init(self) -> None:
        close = self.data.Close
        self.sma1 = self.I(SMA, close, self.n1)
        self.sma2 = self.I(SMA, close, self.n2)

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.sell()


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """What both engines must agree on for one closed trade."""

    entry_time: pd.Timestamp
    exit_time: pd.Timestamp
    entry_price: float
    exit_price: float
    long: bool


def _bars_frame(market: MarketData) -> pd.DataFrame:
    """The single symbol of ``market`` in backtesting.py's column layout."""
    return pd.DataFrame(
        {
            "Open": market.open[:, 0],
            "High": market.high[:, 0],
            "Low": market.low[:, 0],
            "Close": market.close[:, 0],
            "Volume": market.volume[:, 0],
        },
        index=pd.DatetimeIndex(market.times).tz_localize("UTC"),
    )


def _backtesting_py_trades(market: MarketData, fast: int, slow: int) -> list[RoundTrip]:
    backtest = Backtest(
        _bars_frame(market), SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True
    )
    trades = backtest.run(n1=fast, n2=slow)["_trades"]
    return [
        RoundTrip(
            pd.Timestamp(row.EntryTime),
            pd.Timestamp(row.ExitTime),
            float(row.EntryPrice),
            float(row.ExitPrice),
            row.Size > 0,
        )
        for row in trades.itertuples()
    ]


def _ffe_trades(market: MarketData, fast: int, slow: int) -> list[RoundTrip]:
    # backtesting.py trades whole units and has no drawdown halt: pinned here, not defaulted.
    config = BacktestConfig(
        cash=CASH, fill=FillModel(at="next_open", commission=COMMISSION), lot_size=WHOLE_UNITS
    )
    strategy = make_strategy("sma_cross", {"fast": fast, "slow": slow})
    return [
        RoundTrip(
            pd.Timestamp(trade.entry_time),
            pd.Timestamp(trade.exit_time),
            trade.entry_price,
            trade.exit_price,
            trade.quantity > 0,
        )
        for trade in run_backtest(market, strategy, config, NO_HALT).trades
    ]


def _same(a: RoundTrip, b: RoundTrip) -> bool:
    return (
        a.entry_time == b.entry_time
        and a.exit_time == b.exit_time
        and math.isclose(a.entry_price, b.entry_price, rel_tol=REL_TOL, abs_tol=0.0)
        and math.isclose(a.exit_price, b.exit_price, rel_tol=REL_TOL, abs_tol=0.0)
        and a.long == b.long
    )


def _assert_same_trades(
    market: MarketData, fast: int, slow: int, *, need_trades: bool = True
) -> None:
    expected = _backtesting_py_trades(market, fast, slow)
    actual = _ffe_trades(market, fast, slow)
    for number, (theirs, ours) in enumerate(zip(expected, actual, strict=False)):
        assert _same(theirs, ours), (
            f"first divergence at trade {number} of {len(expected)}:\n"
            f"  backtesting.py: {theirs}\n  ffe:            {ours}"
        )
    assert len(actual) == len(expected), (
        f"ffe closed {len(actual)} trades, backtesting.py {len(expected)}; the first "
        f"{min(len(actual), len(expected))} agree"
    )
    assert expected or not need_trades, "no trades at all: the case tests nothing"


@pytest.fixture(scope="module")
def bundled() -> dict[str, MarketData]:
    source = BundledBarSource()
    return {symbol: load_market(source, [symbol]) for symbol in ("SP500", "NASDAQ")}


@pytest.mark.parametrize(("fast", "slow"), [(10, 20), (5, 30), (20, 50), (50, 200)])
def test_sma_cross_on_sp500_then_same_trades_as_backtesting_py(
    bundled: dict[str, MarketData], fast: int, slow: int
) -> None:
    _assert_same_trades(bundled["SP500"], fast, slow)


@pytest.mark.parametrize(("fast", "slow"), [(10, 20), (20, 50)])
def test_sma_cross_on_nasdaq_then_same_trades_as_backtesting_py(
    bundled: dict[str, MarketData], fast: int, slow: int
) -> None:
    _assert_same_trades(bundled["NASDAQ"], fast, slow)


@pytest.mark.parametrize(("seed", "n_bars"), [(1, 2520), (7, 500), (42, 5000)])
def test_sma_cross_on_synthetic_bars_then_same_trades_as_backtesting_py(
    seed: int, n_bars: int
) -> None:
    _assert_same_trades(SyntheticMarket(1, n_bars, seed=seed).to_market(), 10, 20)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_bars=st.integers(150, 1500),
    fast=st.integers(2, 30),
    gap=st.integers(1, 40),
)
def test_sma_cross_on_any_synthetic_market_then_same_trades_as_backtesting_py(
    seed: int, n_bars: int, fast: int, gap: int
) -> None:
    market = SyntheticMarket(1, n_bars, seed=seed).to_market()
    _assert_same_trades(market, fast, fast + gap, need_trades=False)
