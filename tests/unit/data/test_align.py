"""load_market: several symbols on one time axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ffe.data import SyntheticMarket, load_market
from ffe.domain import DataError, Timeframe


class FrameSource:
    """A BarSource over frames held in memory."""

    def __init__(self, timeframes: dict[str, str], **frames: pd.DataFrame) -> None:
        self._frames = frames
        self._timeframes = {symbol: Timeframe.parse(tf) for symbol, tf in timeframes.items()}

    def symbols(self) -> list[str]:
        return sorted(self._frames)

    def timeframe(self, symbol: str) -> Timeframe:
        return self._timeframes[symbol]

    def load(self, symbol: str) -> pd.DataFrame:
        return self._frames[symbol].copy()


def _bars(times: list[str], closes: list[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(times, tz="UTC", name="time")
    close = np.asarray(closes)
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
        index=index,
    )


@pytest.fixture
def source() -> FrameSource:
    return FrameSource(
        {"A": "1d", "B": "1d", "H": "1h"},
        A=_bars(["2024-01-02", "2024-01-03", "2024-01-05"], [10, 11, 12]),
        B=_bars(["2024-01-03", "2024-01-04"], [20, 21]),
        H=_bars(["2024-01-02 09:00", "2024-01-02 10:00"], [5, 6]),
    )


def test_load_market_when_gaps_then_union_of_times_with_nan(source):
    market = load_market(source, ["A", "B"])

    assert market.symbols == ("A", "B")
    assert pd.DatetimeIndex(market.times).strftime("%m-%d").tolist() == [
        "01-02",
        "01-03",
        "01-04",
        "01-05",
    ]
    np.testing.assert_array_equal(market.close[:, 0], [10, 11, np.nan, 12])
    np.testing.assert_array_equal(market.close[:, 1], [np.nan, 20, 21, np.nan])
    assert market.timeframe == Timeframe(1, "d")


def test_load_market_when_start_and_end_then_inclusive_window(source):
    market = load_market(source, ["A", "B"], start="2024-01-03", end="2024-01-04")

    assert market.n_bars == 2
    np.testing.assert_array_equal(market.close[:, 0], [11, np.nan])


def test_load_market_when_end_is_a_date_then_whole_day_included(source):
    market = load_market(source, ["H"], end="2024-01-02")

    assert market.n_bars == 2
    assert load_market(source, ["H"], end="2024-01-02 09:30").n_bars == 1


def test_load_market_when_window_empty_then_error_gives_data_range(source):
    with pytest.raises(DataError, match="A has no bars from 2025-01-01 to the end: its bars run"):
        load_market(source, ["A"], start="2025-01-01")


def test_load_market_when_start_after_end_then_error(source):
    with pytest.raises(DataError, match="after the end"):
        load_market(source, ["A"], start="2024-02-01", end="2024-01-01")


def test_load_market_when_timeframes_differ_then_error_names_both(source):
    with pytest.raises(DataError, match="cannot mix timeframes: A has 1d bars but H has 1h"):
        load_market(source, ["A", "H"])


def test_load_market_when_symbol_repeated_or_none_then_error(source):
    with pytest.raises(DataError, match="more than once"):
        load_market(source, ["A", "A"])
    with pytest.raises(DataError, match="no symbols"):
        load_market(source, [])


def test_load_market_from_synthetic_then_equals_fast_path():
    synthetic = SyntheticMarket(3, 60, seed=11)

    market = load_market(synthetic, synthetic.symbols())

    np.testing.assert_array_equal(market.close, synthetic.to_market().close)
    np.testing.assert_array_equal(market.times, synthetic.to_market().times)
