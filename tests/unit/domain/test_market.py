"""MarketData validation and the point-in-time History view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffe.domain.errors import DataError
from ffe.domain.market import History, MarketData
from ffe.domain.timeframe import Timeframe

NAN = math.nan


def daily_times(n: int) -> np.ndarray:
    return np.datetime64("2024-01-01", "ns") + np.arange(n) * np.timedelta64(1, "D")


def market(close: list[list[float]], symbols: tuple[str, ...] = ("A", "B")) -> MarketData:
    """Bars whose open, high and low equal the close: enough for shape and view tests."""
    prices = np.array(close, dtype=np.float64)
    return MarketData(
        symbols,
        daily_times(len(prices)),
        open=prices,
        high=prices,
        low=prices,
        close=prices,
        volume=np.ones_like(prices),
    )


def test_market_data_when_valid_then_counts_and_default_timeframe():
    data = market([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])

    assert data.n_bars == 3
    assert data.n_symbols == 2
    assert data.timeframe == Timeframe(1, "d")
    assert data.times.dtype == np.dtype("datetime64[ns]")


def test_market_data_when_field_has_wrong_shape_then_error_names_field_and_shapes():
    prices = np.ones((3, 2))

    with pytest.raises(DataError, match=r"close has shape \(3,\), expected \(3, 2\)"):
        MarketData(("A", "B"), daily_times(3), prices, prices, prices, np.ones(3), prices)


def test_market_data_when_times_length_differs_from_rows_then_error():
    prices = np.ones((3, 1))

    with pytest.raises(DataError, match=r"expected \(4, 1\)"):
        MarketData(("A",), daily_times(4), prices, prices, prices, prices, prices)


@pytest.mark.parametrize(
    "times",
    [
        ["2024-01-01", "2024-01-03", "2024-01-02"],  # out of order
        ["2024-01-01", "2024-01-02", "2024-01-02"],  # duplicate
    ],
    ids=["decreasing", "duplicate"],
)
def test_market_data_when_times_not_strictly_increasing_then_error(times):
    prices = np.ones((3, 1))

    with pytest.raises(DataError, match="strictly increasing"):
        MarketData(("A",), np.array(times, dtype="datetime64[ns]"), *([prices] * 5))


@pytest.mark.parametrize("name", ["open", "high", "low", "close", "volume", "mark", "times"])
def test_market_data_arrays_when_written_then_refused(name):
    data = market([[1.0, 10.0], [2.0, 20.0]])

    with pytest.raises(ValueError, match="read-only"):
        getattr(data, name)[0] = 0


def test_market_data_when_input_array_changes_later_then_prices_unchanged():
    prices = np.array([[1.0], [2.0]])
    data = MarketData(("A",), daily_times(2), prices, prices, prices, prices, prices)

    prices[0, 0] = 99.0

    assert data.close[0, 0] == 1.0


def test_mark_when_close_missing_then_last_close_carried_forward_and_nan_before_first_bar():
    data = market([[NAN, 10.0], [2.0, NAN], [NAN, NAN], [4.0, 40.0]])

    expected = np.array([[NAN, 10.0], [2.0, 10.0], [2.0, 10.0], [4.0, 40.0]])
    np.testing.assert_array_equal(data.mark, expected)
    assert math.isnan(data.close[1, 1])  # the close itself stays missing


def test_index_of_when_unknown_symbol_then_error_names_symbol():
    data = market([[1.0, 10.0]])

    assert data.index_of("B") == 1
    with pytest.raises(DataError, match="'ZZZ'"):
        data.index_of("ZZZ")


def test_select_when_range_then_rows_times_and_timeframe_of_that_range():
    data = market([[NAN, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])

    part = data.select(1, 3)

    assert part.n_bars == 2
    np.testing.assert_array_equal(part.times, data.times[1:3])
    np.testing.assert_array_equal(part.close, [[2.0, 20.0], [3.0, 30.0]])
    assert part.symbols == data.symbols
    assert part.timeframe == data.timeframe
    assert not part.close.flags.writeable


def test_select_when_first_row_missing_then_mark_restarts_nan():
    data = market([[1.0], [NAN], [3.0]], symbols=("A",))

    part = data.select(1, 3)

    # The selection knows nothing of bars before it, so there is no close to carry.
    assert math.isnan(part.mark[0, 0])
    assert part.mark[1, 0] == 3.0


def test_history_when_length_given_then_every_view_ends_at_current_bar():
    data = market([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])

    history = History(data, 2)

    assert len(history) == 2
    for name in ("times", "open", "high", "low", "close", "volume", "mark"):
        assert len(getattr(history, name)) == 2, name
    np.testing.assert_array_equal(history.close, [[1.0, 10.0], [2.0, 20.0]])
    assert history.symbols == ("A", "B")
    assert history.timeframe == data.timeframe


@pytest.mark.parametrize("name", ["open", "high", "low", "close", "volume", "mark", "times"])
def test_history_views_when_written_then_refused(name):
    history = History(market([[1.0, 10.0], [2.0, 20.0]]), 1)

    with pytest.raises(ValueError, match="read-only"):
        getattr(history, name)[0] = 0


@pytest.mark.parametrize("length", [0, -1, 3])
def test_history_when_length_outside_bounds_then_error(length):
    data = market([[1.0, 10.0], [2.0, 20.0]])

    with pytest.raises(ValueError, match=r"outside 1\.\.2"):
        History(data, length)


def test_history_of_market_when_called_then_all_bars():
    data = market([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])

    history = data.history()

    assert len(history) == 3
    np.testing.assert_array_equal(history.close, data.close)
