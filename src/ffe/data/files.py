"""Reading bar files (CSV or Parquet) into validated bar frames.

Column names are matched without regard to case; the time column may be called time,
timestamp, date or datetime (or be the index of a Parquet file); volume is optional. Naive
times are UTC, aware times are converted to UTC, and integer epoch seconds or milliseconds
are accepted. Every problem becomes a ``DataError`` naming the file and the line (CSV, the
header being line 1) or the row (Parquet, counting from 1).
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from ffe.data.source import TIME_INDEX
from ffe.data.validate import Rows, check_bars, check_not_wider
from ffe.domain import DataError, Timeframe

FloatArray = npt.NDArray[np.float64]
TIME_NAMES = ("time", "timestamp", "datetime", "date")
_REQUIRED = ("open", "high", "low", "close")
_NULL_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none"})
_ZONE_SUFFIX = r"(?:[Zz]|[+-]\d{2}:?\d{2})$"
_DELIMITERS = (",", ";", "\t", "|")
_PARQUET_MAGIC = b"PAR1"
_TEXT = pd.StringDtype("pyarrow")  # vectorized string methods, in C++ rather than Python
_EXPECTED = (
    "a bar file needs a time column (named time, timestamp, date or datetime), open, high, "
    "low, close and optionally volume; names are not case-sensitive"
)


def read_bars_file(path: Path, *, timeframe: Timeframe | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file of bars and return it as a validated bar frame."""
    data = _read_bytes(path)
    if data.startswith(_PARQUET_MAGIC):
        raw, rows = _read_parquet(data, str(path))
    else:
        raw, rows = _read_csv(data, str(path))
    frame = check_bars(normalize_bars(raw, rows), rows, timeframe)
    if timeframe is not None:
        check_not_wider(pd.DatetimeIndex(frame.index), rows, timeframe)
    return frame


def normalize_bars(raw: pd.DataFrame, rows: Rows) -> pd.DataFrame:
    """Turn a frame as found in a file into the bar frame shape, without value checks."""
    if raw.empty:
        raise rows.file_error("there are no bars: the file has no data rows")
    columns = _find_columns(raw, rows)
    times = _parse_times(raw[columns["time"]], rows)
    data = {name: _parse_numbers(raw[columns[name]], name, rows) for name in _REQUIRED}
    has_volume = "volume" in columns
    data["volume"] = (
        _parse_numbers(raw[columns["volume"]], "volume", rows) if has_volume else np.zeros(len(raw))
    )
    return pd.DataFrame(data, index=pd.DatetimeIndex(times, name=TIME_INDEX))


def _find_columns(raw: pd.DataFrame, rows: Rows) -> dict[str, str]:
    """Map each canonical name (``time`` for the time column) to the column in ``raw``."""
    by_name: dict[str, str] = {}
    for column in raw.columns:
        key = str(column).strip().lower()
        if key in by_name:
            raise rows.file_error(f"column {key!r} appears twice: keep one of them")
        by_name[key] = column
    time_names = [name for name in TIME_NAMES if name in by_name]
    missing = [] if time_names else ["a time column"]
    missing += [name for name in _REQUIRED if name not in by_name]
    if missing:
        found = ", ".join(map(repr, by_name)) or "none"
        raise rows.file_error(f"missing {', '.join(missing)} (found {found}): {_EXPECTED}")
    if len(time_names) > 1:
        raise rows.file_error(
            f"several time columns ({', '.join(time_names)}): keep one, or rename the others"
        )
    found_columns = {name: by_name[name] for name in (*_REQUIRED, "volume") if name in by_name}
    return {"time": by_name[time_names[0]], **found_columns}


def _parse_times(values: pd.Series, rows: Rows) -> pd.DatetimeIndex:
    """Bar times as a UTC DatetimeIndex: datetimes, date/time text or integer epochs."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.Series(pd.to_datetime(values, utc=True))
    elif _is_number(values):
        parsed = _from_epoch(values.to_numpy(dtype=np.float64, na_value=np.nan), rows)
    else:
        parsed = _from_text(values.astype(_TEXT).str.strip(), rows)
    rows.check(parsed.isna().to_numpy(), lambda _: "the bar time is missing")
    return pd.DatetimeIndex(parsed).as_unit("ns")


def _from_text(text: pd.Series, rows: Rows) -> pd.Series:
    """Integer text as epochs; otherwise ISO 8601, or a format pandas infers if that fails."""
    rows.check((text.isna() | (text == "")).to_numpy(), lambda _: "the bar time is missing")
    if text.str.fullmatch(r"-?\d+").all():
        return _from_epoch(np.asarray(text.astype("float64"), dtype=np.float64), rows)
    # pandas lets a zone seen on one row leak into later naive rows, so parse the two apart.
    zoned = text.str.contains(_ZONE_SUFFIX, regex=True).to_numpy(dtype=np.bool_)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    for group in (zoned, ~zoned):
        if group.any():
            parsed[group] = _parse_text_times(text[group])
    rows.check(
        parsed.isna().to_numpy(),
        lambda p: (
            f"cannot read the time {text.iloc[p]!r}: write times like 2024-01-02, "
            "2024-01-02T09:30:00Z or as integer epoch seconds"
        ),
    )
    return pd.Series(parsed)


def _parse_text_times(text: pd.Series) -> pd.Series:
    """ISO 8601 first; where that fails, the one format pandas infers from the first row."""
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    if parsed.isna().any():
        with warnings.catch_warnings(action="ignore", category=UserWarning):
            # pandas warns when it cannot infer one format; our error message says it better.
            inferred = pd.to_datetime(text, utc=True, errors="coerce")
        parsed = inferred if inferred.notna().sum() > parsed.notna().sum() else parsed
    return pd.Series(parsed).dt.as_unit("ns")


def _from_epoch(numbers: FloatArray, rows: Rows) -> pd.Series:
    """Epoch numbers, in seconds or milliseconds (told apart by size), as UTC times."""
    rows.check(~np.isfinite(numbers), lambda _: "the bar time is missing")
    # Seconds reach 1e11 only in the year 5138, milliseconds pass it in 1973: size tells them apart.
    unit: Literal["s", "ms"] = "ms" if np.abs(numbers).max() >= 1e11 else "s"
    try:
        return pd.Series(pd.to_datetime(pd.Series(numbers), unit=unit, utc=True))
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        big = int(np.argmax(np.abs(numbers)))
        raise rows.error(big, f"epoch time {numbers[big]:.0f} is out of range") from None


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _parse_numbers(values: pd.Series, name: str, rows: Rows) -> FloatArray:
    if _is_number(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.astype(_TEXT).str.strip()
    null = text.isna() | text.str.lower().isin(_NULL_TEXT)
    numbers = pd.to_numeric(text.mask(null), errors="coerce")
    rows.check(
        (numbers.isna() & ~null).to_numpy(),
        lambda p: f"{name} {text.iloc[p]!r} is not a number: write plain numbers like 1234.5",
    )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError("no such file: check the path", path=str(path)) from None
    except IsADirectoryError:
        raise DataError("this is a directory, not a bar file", path=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror}", path=str(path)) from None


def _read_parquet(data: bytes, source: str) -> tuple[pd.DataFrame, Rows]:
    try:
        raw = pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=source) from None
    index_name = str(raw.index.name or "").strip().lower()
    if isinstance(raw.index, pd.DatetimeIndex) or index_name in TIME_NAMES:
        raw = raw.reset_index()
    return raw, Rows(source)


def _read_csv(data: bytes, source: str) -> tuple[pd.DataFrame, Rows]:
    records, lines = _split_records(_decode(data, source), source)
    header = [field.strip() for field in records[0]]
    rows = Rows(source, np.asarray(lines[1:], dtype=np.int64), header_line=lines[0])
    widths = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))[1:]
    rows.check(
        widths != len(header),
        lambda p: (
            f"this line has {widths[p]} fields but the header has {len(header)}: "
            "every line needs one value per column"
        ),
    )
    raw = pd.DataFrame(records[1:], columns=header, dtype=_TEXT)
    # Rows of empty fields (spreadsheets leave them at the end) carry no bar: drop them.
    filled = [raw.iloc[:, i].str.strip().fillna("").to_numpy() != "" for i in range(len(header))]
    keep = np.logical_or.reduce(filled) if len(raw) else np.ones(0, dtype=np.bool_)
    if keep.all():
        return raw, rows
    assert rows.lines is not None  # set just above
    return raw.loc[keep].reset_index(drop=True), Rows(source, rows.lines[keep], lines[0])


def _decode(data: bytes, source: str) -> str:
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(
            "binary data, not CSV text: export the bars as CSV or Parquet",
            path=source,
            line=data.count(b"\n", 0, nul) + 1,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            "not UTF-8 text: save the file as UTF-8 CSV",
            path=source,
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None


def _split_records(text: str, source: str) -> tuple[list[list[str]], list[int]]:
    """Every non-blank record (the header first) and the line it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    records: list[list[str]] = []
    lines: list[int] = []
    previous = 0
    try:
        for record in reader:
            # A blank line reads as no field, or as one field of spaces.
            if len(record) > 1 or (record and record[0].strip()):
                records.append(record)
                lines.append(previous + 1)
            previous = reader.line_num
    except csv.Error as exc:
        raise DataError(f"not valid CSV: {exc}", path=source, line=reader.line_num) from None
    if not records:
        raise DataError(f"the file is empty: {_EXPECTED}", path=source)
    return records, lines


def _delimiter(text: str) -> str:
    """The delimiter the header line uses most: comma, semicolon, tab or bar."""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    return max(_DELIMITERS, key=first_line.count)
