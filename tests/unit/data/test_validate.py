"""Every validation error names the file, the first offending line and what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ffe.data import validate_bars
from ffe.data.files import read_bars_file
from ffe.data.validate import timeframe_for
from ffe.domain import DataError, Timeframe

DAILY = Timeframe(1, "d")


def _error(path: Path, timeframe: Timeframe | None = DAILY) -> DataError:
    with pytest.raises(DataError) as caught:
        read_bars_file(path, timeframe=timeframe)
    return caught.value


def test_read_when_file_is_valid_then_returns_bars_in_contract(write_bars, good_rows):
    frame = read_bars_file(write_bars(*good_rows), timeframe=DAILY)

    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert frame["close"].tolist() == [100.5, 101.5, 102.0, 103.0]


def test_read_when_high_below_low_then_error_names_line(write_bars, good_rows):
    good_rows[1] = "2024-01-03,100.5,99,100,100,1100"

    error = _error(write_bars(*good_rows))

    assert error.line == 3
    assert str(error).startswith(f"{error.path}:3: high 99 is below low 100")


def test_read_when_problem_repeats_then_first_line_and_count_reported(write_bars, good_rows):
    good_rows[1] = "2024-01-03,100.5,99,100,100,1100"
    good_rows[3] = "2024-01-05,102,99,101.5,100,900"

    error = _error(write_bars(*good_rows))

    assert error.line == 3
    assert "2 lines have this problem" in str(error)


def test_read_when_blank_lines_then_line_numbers_are_physical(write_bars, good_rows):
    rows = [good_rows[0], "", "", good_rows[1], "2024-01-04,101.5,100,101,102,1200"]

    error = _error(write_bars(*rows))

    assert error.line == 6  # header, bar, two blank lines, bar, the bad bar


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2024-01-03,,102,100,101.5,1100", "open missing"),
        ("2024-01-03,100.5,102,100,nan,1100", "close missing"),
        ("2024-01-03,100.5,inf,100,101.5,1100", "high missing or not a finite number"),
    ],
    ids=["empty", "nan", "inf"],
)
def test_read_when_price_missing_then_error_names_line(write_bars, good_rows, row, expected):
    good_rows[1] = row

    error = _error(write_bars(*good_rows))

    assert error.line == 3
    assert expected in str(error)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2024-01-04,0,103,0,102,1200", "open is 0: prices must be greater than 0"),
        ("2024-01-04,101.5,103,-1,102,1200", "low is -1: prices must be greater than 0"),
    ],
    ids=["zero", "negative"],
)
def test_read_when_price_not_positive_then_error_names_line(write_bars, good_rows, row, expected):
    good_rows[2] = row

    error = _error(write_bars(*good_rows))

    assert error.line == 4
    assert expected in str(error)


@pytest.mark.parametrize(
    ("row", "column"),
    [("2024-01-05,105,104,101.5,103,900", "open"), ("2024-01-05,102,104,101.5,101,900", "close")],
)
def test_read_when_open_or_close_outside_range_then_error_names_line(
    write_bars, good_rows, row, column
):
    good_rows[3] = row

    error = _error(write_bars(*good_rows))

    assert error.line == 5
    assert f"{column} must lie between low and high" in str(error)


@pytest.mark.parametrize(
    ("volume", "expected"),
    [("-5", "volume is -5: volume cannot be negative"), ("", "volume is missing")],
    ids=["negative", "missing"],
)
def test_read_when_volume_bad_then_error_names_line(write_bars, good_rows, volume, expected):
    good_rows[0] = f"2024-01-02,100,101,99,100.5,{volume}"

    error = _error(write_bars(*good_rows))

    assert error.line == 2
    assert expected in str(error)


def test_read_when_duplicate_time_then_error_names_both_lines(write_bars, good_rows):
    good_rows[2] = good_rows[2].replace("2024-01-04", "2024-01-03")

    error = _error(write_bars(*good_rows))

    assert error.line == 4
    assert "duplicate time 2024-01-03: the bar on line 3 has the same time" in str(error)


def test_read_when_time_goes_backwards_then_error_says_sort(write_bars, good_rows):
    good_rows[3] = good_rows[3].replace("2024-01-05", "2024-01-01")

    error = _error(write_bars(*good_rows))

    assert error.line == 5
    assert "earlier than the previous bar's 2024-01-04 (line 4): sort the bars" in str(error)


def test_read_when_bars_newest_first_then_error_says_sort_oldest_first(write_bars, good_rows):
    error = _error(write_bars(*reversed(good_rows)))

    assert error.line == 3
    assert "newest first: sort them oldest first" in str(error)


def test_read_when_spacing_below_timeframe_then_error_suggests_timeframe(write_bars):
    rows = [f"2024-01-02 {hour:02d}:00,100,101,99,100.5,1000" for hour in range(9, 13)]

    error = _error(write_bars(*rows), timeframe=DAILY)

    assert error.line == 3
    assert "closer than the declared timeframe 1d" in str(error)
    assert "--timeframe 1h" in str(error)
    assert read_bars_file(write_bars(*rows), timeframe=Timeframe.parse("1h")).shape == (4, 5)


def test_read_when_daily_bars_cross_dst_then_23h_spacing_accepted(write_bars):
    # Local midnights in New York, 2024-03-10 is the switch to summer time.
    rows = [
        "2024-03-09T00:00:00-05:00,100,101,99,100.5,1000",
        "2024-03-10T00:00:00-05:00,100,101,99,100.5,1000",
        "2024-03-11T00:00:00-04:00,100,101,99,100.5,1000",
    ]

    frame = read_bars_file(write_bars(*rows), timeframe=DAILY)

    assert np.diff(frame.index.asi8).min() == 23 * 3600 * 10**9


def test_validate_bars_when_frame_has_problem_then_error_names_row():
    frame = pd.DataFrame(
        {"open": [1.0, 1.0], "high": [2.0, 0.5], "low": [0.5, 1.0], "close": [1.5, 1.0]},
        index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"]),
    ).assign(volume=0.0)

    with pytest.raises(DataError, match=r"^mem: row 2: high 0.5 is below low 1"):
        validate_bars(frame, source="mem")


def test_validate_bars_when_lines_given_then_error_uses_them():
    frame = pd.DataFrame(
        {"open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5], "volume": [-1.0]},
        index=pd.DatetimeIndex(["2024-01-02"]),
    )

    with pytest.raises(DataError) as caught:
        validate_bars(frame, source="feed.csv", lines=[17])

    assert (caught.value.path, caught.value.line) == ("feed.csv", 17)


def test_validate_bars_when_naive_index_then_result_is_utc_and_ordered():
    frame = pd.DataFrame(
        {"volume": [5], "close": [1.5], "low": [0.5], "high": [2], "open": [1]},
        index=pd.DatetimeIndex(["2024-01-02 10:00"]),
    )

    result = validate_bars(frame, source="mem")

    assert list(result.columns) == ["open", "high", "low", "close", "volume"]
    assert result.index[0] == pd.Timestamp("2024-01-02 10:00", tz="UTC")
    assert result["high"].dtype == np.float64


def test_validate_bars_when_column_missing_then_error_names_it():
    frame = pd.DataFrame({"open": [1.0]}, index=pd.DatetimeIndex(["2024-01-02"]))

    with pytest.raises(DataError, match="missing column"):
        validate_bars(frame, source="mem")


def test_validate_bars_when_nullable_column_has_na_then_error_says_missing():
    frame = pd.DataFrame(
        {"open": [1.0, None], "high": 2.0, "low": 0.5, "close": 1.5, "volume": 0.0},
        index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"]),
    ).astype({"open": "Float64"})

    with pytest.raises(DataError, match="row 2: open missing"):
        validate_bars(frame, source="mem")


def test_validate_bars_when_column_holds_text_then_data_error():
    frame = pd.DataFrame(
        {"open": ["x"], "high": 2.0, "low": 0.5, "close": 1.5, "volume": 0.0},
        index=pd.DatetimeIndex(["2024-01-02"]),
    )

    with pytest.raises(DataError, match="bar columns must hold numbers"):
        validate_bars(frame, source="mem")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(86_400, "1d"), (604_800, "1w"), (7_200, "2h"), (900, "15m"), (90, "90s"), (1, "1s")],
)
def test_timeframe_for_then_largest_unit_that_divides(seconds, expected):
    assert str(timeframe_for(seconds)) == expected
