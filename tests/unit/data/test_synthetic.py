"""Synthetic markets: deterministic, consistent OHLCV, realistic volatility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffe.data import BarSource, SyntheticMarket
from ffe.domain import DataError, Timeframe

FIELDS = ("open", "high", "low", "close", "volume")


def _arrays(market: SyntheticMarket) -> list[np.ndarray]:
    data = market.to_market()
    return [getattr(data, name) for name in FIELDS]


def test_to_market_when_same_seed_then_same_arrays():
    first, second = (
        _arrays(SyntheticMarket(4, 300, seed=7)),
        _arrays(SyntheticMarket(4, 300, seed=7)),
    )

    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_to_market_when_different_seed_then_different_prices():
    first = SyntheticMarket(4, 300, seed=1).to_market().close
    second = SyntheticMarket(4, 300, seed=2).to_market().close

    assert not np.allclose(first, second)


def test_to_market_when_more_symbols_or_bars_then_existing_series_unchanged():
    small = SyntheticMarket(3, 100, seed=5).to_market()
    large = SyntheticMarket(10, 400, seed=5).to_market()

    assert np.array_equal(small.close, large.close[:100, :3])
    assert np.array_equal(small.volume, large.volume[:100, :3])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_symbols=st.integers(1, 6),
    n_bars=st.integers(1, 80),
    timeframe=st.sampled_from(["1d", "1h", "5m", "1w"]),
)
def test_to_market_for_any_seed_then_ohlc_consistent(seed, n_symbols, n_bars, timeframe):
    data = SyntheticMarket(n_symbols, n_bars, seed=seed, timeframe=timeframe).to_market()

    assert data.close.shape == (n_bars, n_symbols)
    assert np.all(data.high >= np.maximum(data.open, data.close))
    assert np.all(data.low <= np.minimum(data.open, data.close))
    assert np.all(data.low > 0)
    assert np.all(data.volume >= 0)
    assert np.all(np.isfinite(data.high))


def _autocorrelation(values: np.ndarray, lag: int = 1) -> np.ndarray:
    centred = values - values.mean(axis=0)
    return (centred[lag:] * centred[:-lag]).sum(axis=0) / (centred**2).sum(axis=0)


def test_returns_when_squared_then_clearly_autocorrelated():
    close = SyntheticMarket(20, 2520, seed=3).to_market().close
    returns = np.diff(np.log(close), axis=0)

    # Volatility clustering: big moves follow big moves. Plain returns stay uncorrelated.
    assert np.median(_autocorrelation(returns**2)) > 0.05
    assert abs(np.median(_autocorrelation(returns))) < 0.03


def test_returns_then_symbols_positively_correlated_and_plausibly_volatile():
    close = SyntheticMarket(20, 2520, seed=4).to_market().close
    returns = np.diff(np.log(close), axis=0)

    correlations = np.corrcoef(returns.T)[np.triu_indices(20, 1)]
    annual_vol = returns.std(axis=0) * np.sqrt(252)
    assert np.median(correlations) > 0.1
    assert np.all((annual_vol > 0.08) & (annual_vol < 0.8))


def test_times_when_daily_then_business_days_from_start():
    times = pd.DatetimeIndex(SyntheticMarket(1, 30, start="2024-01-05").to_market().times)

    assert times[0] == pd.Timestamp("2024-01-05")
    assert times[1] == pd.Timestamp("2024-01-08")  # Friday, then Monday
    assert not np.any(times.dayofweek >= 5)


def test_times_when_intraday_then_regular_spacing():
    data = SyntheticMarket(2, 50, timeframe="15m").to_market()

    assert set(np.diff(data.times.astype(np.int64)).tolist()) == {15 * 60 * 10**9}
    assert data.timeframe == Timeframe(15, "m")


def test_load_then_frame_matches_market_column():
    market = SyntheticMarket(3, 40, seed=9)

    frame = market.load("SYN0002")

    assert isinstance(market, BarSource)
    assert market.symbols() == ["SYN0000", "SYN0001", "SYN0002"]
    assert np.array_equal(frame["close"].to_numpy(), market.to_market().close[:, 2])
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "time"


def test_load_when_symbol_unknown_then_data_error():
    with pytest.raises(DataError, match="available symbols are SYN0000"):
        SyntheticMarket(1, 10).load("SYN0001")


def test_init_when_no_bars_then_data_error():
    with pytest.raises(DataError, match="at least one symbol and one bar"):
        SyntheticMarket(3, 0)


def test_to_market_when_large_then_arrays_are_float64_and_compact():
    data = SyntheticMarket(500, 2520).to_market()

    assert data.close.shape == (2520, 500)
    assert sum(getattr(data, name).nbytes for name in FIELDS) == 5 * 2520 * 500 * 8
