"""Reading CSV and Parquet bar files: columns, times, formats and malformed input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ffe.data.files import read_bars_file
from ffe.domain import DataError, Timeframe


def _error(path: Path) -> DataError:
    with pytest.raises(DataError) as caught:
        read_bars_file(path)
    return caught.value


def _parquet(tmp_path: Path, frame: pd.DataFrame, name: str = "bars.parquet") -> Path:
    path = tmp_path / name
    frame.to_parquet(path)
    return path


def _frame(times: Sequence[object] | pd.Index, **overrides: list[float]) -> pd.DataFrame:
    n = len(times)
    columns = {"open": [10.0] * n, "high": [11.0] * n, "low": [9.0] * n, "close": [10.5] * n}
    return pd.DataFrame({"time": times, **columns, **overrides})


def test_read_when_columns_in_any_case_and_date_column_then_accepted(write_bars):
    path = write_bars("2024-01-02,1,2,0.5,1.5,7", header="Date,OPEN,High,low,Close,Volume")

    frame = read_bars_file(path)

    assert frame.iloc[0].tolist() == [1.0, 2.0, 0.5, 1.5, 7.0]


@pytest.mark.parametrize("name", ["time", "timestamp", "datetime", "Date"])
def test_read_when_time_column_has_any_known_name_then_accepted(write_bars, name):
    path = write_bars("2024-01-02,1,2,0.5,1.5", header=f"{name},open,high,low,close")

    assert read_bars_file(path).index[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_read_when_volume_column_absent_then_volume_is_zero(write_bars, good_rows):
    rows = [row.rsplit(",", 1)[0] for row in good_rows]

    frame = read_bars_file(write_bars(*rows, header="time,open,high,low,close"))

    assert frame["volume"].tolist() == [0.0] * 4


def test_read_when_columns_missing_then_error_names_them_and_lists_found(write_bars):
    error = _error(write_bars("2024-01-02,1,1.5", header="time,open,close"))

    assert error.line == 1
    assert "missing high, low (found 'time', 'open', 'close')" in str(error)


def test_read_when_no_time_column_then_error_names_the_accepted_names(write_bars):
    error = _error(write_bars("1,2,0.5,1.5", header="open,high,low,close"))

    assert "missing a time column" in str(error)
    assert "time, timestamp, date or datetime" in str(error)


def test_read_when_two_time_columns_then_error_asks_to_keep_one(write_bars):
    error = _error(write_bars("2024-01-02,2024-01-02,1,2,0.5,1.5", header="date,time,o,h,l,c"))

    assert "missing open, high, low, close" in str(error)
    error = _error(
        write_bars("2024-01-02,10:00,1,2,0.5,1.5", header="date,time,open,high,low,close")
    )
    assert "several time columns (time, date)" in str(error)


def test_read_when_file_empty_then_error_says_empty(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n  \n", encoding="utf-8")

    error = _error(path)

    assert str(error).startswith(f"{path}: the file is empty")


def test_read_when_header_only_then_error_says_no_bars(write_bars):
    error = _error(write_bars())

    assert error.line == 1
    assert "no bars" in str(error)


def test_read_when_time_unparseable_then_error_quotes_value_and_line(write_bars, good_rows):
    good_rows[2] = "Jan the 4th,101.5,103,101,102,1200"

    error = _error(write_bars(*good_rows))

    assert error.line == 4
    assert "cannot read the time 'Jan the 4th'" in str(error)


def test_read_when_time_empty_then_error_says_missing(write_bars, good_rows):
    good_rows[1] = "," + good_rows[1].split(",", 1)[1]

    error = _error(write_bars(*good_rows))

    assert (error.line, "the bar time is missing" in str(error)) == (3, True)


def test_read_when_price_not_a_number_then_error_quotes_value(write_bars, good_rows):
    good_rows[3] = "2024-01-05,102,104,101.5,abc,900"

    error = _error(write_bars(*good_rows))

    assert error.line == 5
    assert "close 'abc' is not a number" in str(error)


def test_read_when_row_is_ragged_then_error_names_line(write_bars, good_rows):
    good_rows[1] += ",extra"

    error = _error(write_bars(*good_rows))

    assert error.line == 3
    assert "7 fields but the header has 6" in str(error)


def test_read_when_file_is_binary_junk_then_data_error(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(b"time,open\n" + bytes(range(256)) * 4)

    error = _error(path)

    assert error.line == 2
    assert "binary data, not CSV text" in str(error)


def test_read_when_file_not_utf8_then_error_says_save_as_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"time,open,high,low,close\n2024-01-02,1,2,0.5,1.5\n2024-01-03\xe9,1,2,1,1\n")

    error = _error(path)

    assert error.line == 3
    assert "save the file as UTF-8" in str(error)


def test_read_when_file_missing_then_error_says_no_such_file(tmp_path):
    error = _error(tmp_path / "nope.csv")

    assert "no such file" in str(error)


def test_read_when_semicolons_then_delimiter_detected(write_bars):
    path = write_bars("2024-01-02;1;2;0.5;1.5;3", header="time;open;high;low;close;volume")

    assert read_bars_file(path)["volume"].iloc[0] == 3.0


def test_read_when_times_have_offsets_then_converted_to_utc(write_bars):
    path = write_bars(
        "2024-01-02T10:00:00+02:00,1,2,0.5,1.5",
        "2024-01-02 10:00:00,1,2,0.5,1.5",  # naive: already UTC
        "2024-01-02T11:30:00Z,1,2,0.5,1.5",
        header="time,open,high,low,close",
    )

    frame = read_bars_file(path)

    expected = ["2024-01-02 08:00", "2024-01-02 10:00", "2024-01-02 11:30"]
    assert frame.index.equals(pd.DatetimeIndex(expected, tz="UTC", name="time"))


@pytest.mark.parametrize("scale", [1, 1000], ids=["seconds", "milliseconds"])
def test_read_when_times_are_epoch_integers_then_unit_detected(write_bars, scale):
    stamps = [1_704_153_600 * scale, 1_704_240_000 * scale]  # 2024-01-02, 2024-01-03
    path = write_bars(*(f"{s},1,2,0.5,1.5" for s in stamps), header="timestamp,open,high,low,close")

    frame = read_bars_file(path, timeframe=Timeframe(1, "d"))

    assert frame.index[1] == pd.Timestamp("2024-01-03", tz="UTC")


def test_read_parquet_when_time_is_index_and_tz_aware_then_converted_to_utc(tmp_path):
    times = pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-03 09:30"], tz="America/New_York")
    frame = _frame(times).set_index("time")

    result = read_bars_file(_parquet(tmp_path, frame))

    assert result.index[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    assert result["close"].tolist() == [10.5, 10.5]


def test_read_parquet_when_epoch_millisecond_column_then_accepted(tmp_path):
    frame = _frame([1_704_153_600_000, 1_704_240_000_000])

    result = read_bars_file(_parquet(tmp_path, frame))

    assert result.index[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_read_parquet_when_bad_row_then_error_names_row(tmp_path):
    frame = _frame(["2024-01-02", "2024-01-03", "2024-01-04"], high=[11.0, 11.0, 8.0])

    error = _error(_parquet(tmp_path, frame))

    assert error.line is None
    assert (
        str(error) == f"{error.path}: row 3: high 8 is below low 9: check the two are not swapped"
    )


def test_read_parquet_when_column_missing_then_error_lists_found(tmp_path):
    frame = _frame(["2024-01-02"]).drop(columns="low")

    error = _error(_parquet(tmp_path, frame))

    assert "missing low (found 'time', 'open', 'high', 'close')" in str(error)


def test_read_parquet_when_file_corrupt_then_data_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + np.arange(100, dtype=np.uint8).tobytes())

    assert "not a readable Parquet file" in str(_error(path))


def test_read_when_rows_of_empty_fields_then_skipped_and_lines_still_physical(write_bars):
    rows = ["2024-01-02,1,2,0.5,1.5", ",,,,", "2024-01-03,1,2,0.5,1.5", "2024-01-04,1,0.1,0.5,1"]

    error = _error(write_bars(*rows, header="time,open,high,low,close"))

    assert error.line == 5
    assert "high 0.1 is below low 0.5" in str(error)


def test_read_when_windows_line_endings_then_lines_counted_once(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(
        b"time,open,high,low,close\r\n2024-01-02,1,2,0.5,1.5\r\n\r\n2024-01-03,1,0.2,0.5,1\r\n"
    )

    assert _error(path).line == 4
