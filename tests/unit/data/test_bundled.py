"""The bundled daily bars shipped inside the arch package."""

from __future__ import annotations

import pandas as pd
import pytest

from ffe.data import BarSource, BundledBarSource
from ffe.domain import DataError, Timeframe


def test_load_sp500_then_real_daily_bars_1999_to_2018():
    frame = BundledBarSource().load("SP500")

    assert len(frame) == 5031
    assert frame.index[0] == pd.Timestamp("1999-01-04", tz="UTC")
    assert frame.index[-1] == pd.Timestamp("2018-12-31", tz="UTC")
    assert frame["close"].iloc[0] == pytest.approx(1228.099976)
    assert frame["volume"].iloc[0] == 877_000_000


def test_load_nasdaq_then_bars_follow_the_frame_contract():
    frame = BundledBarSource().load("NASDAQ")

    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert frame.index.is_unique
    assert frame["close"].iloc[0] == pytest.approx(2208.050049)


def test_load_when_caller_changes_frame_then_next_load_unaffected():
    source = BundledBarSource()
    source.load("SP500")["close"] = 0.0

    assert source.load("SP500")["close"].iloc[0] == pytest.approx(1228.099976)


def test_bundled_source_is_a_bar_source_with_daily_timeframe():
    source = BundledBarSource()

    assert isinstance(source, BarSource)
    assert source.symbols() == ["NASDAQ", "SP500"]
    assert source.timeframe("SP500") == Timeframe(1, "d")


def test_load_when_symbol_unknown_then_error_lists_bundled_symbols():
    with pytest.raises(
        DataError, match="unknown symbol 'DAX': available symbols are NASDAQ, SP500"
    ):
        BundledBarSource().load("DAX")
