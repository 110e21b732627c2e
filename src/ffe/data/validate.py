"""Validation of bar frames.

Every check looks at the whole frame at once and reports the first offending line (or row)
and how many share the problem, with words that say what to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ffe.data.source import BAR_COLUMNS, TIME_INDEX
from ffe.domain import DataError, Timeframe

FloatArray = npt.NDArray[np.float64]
PRICE_COLUMNS = ("open", "high", "low", "close")
_NS = 1_000_000_000
_UNIT_SECONDS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
# Daily bars stamped at local midnight and converted to UTC are 23h apart across a DST switch.
_DST_SLACK_NS = 3_600 * _NS
_SPACING_STEPS = 5  # a week of daily bars holds a one-day step whatever the weekend


@dataclass(frozen=True, slots=True)
class Rows:
    """Where each row of a frame came from, so errors can point at it.

    ``lines`` holds the physical line number of every row (CSV, header = line 1); without it
    rows are reported as ``row N``, counting from 1 (Parquet, in-memory frames).
    """

    source: str
    lines: npt.NDArray[np.int64] | None = None
    header_line: int | None = None

    @property
    def noun(self) -> str:
        return "lines" if self.lines is not None else "rows"

    def where(self, position: int) -> str:
        """``line 7`` or ``row 6``, for messages that mention a second row."""
        if self.lines is not None:
            return f"line {int(self.lines[position])}"
        return f"row {position + 1}"

    def error(self, position: int, message: str) -> DataError:
        """A DataError pointing at the row at ``position``."""
        if self.lines is not None:
            return DataError(message, path=self.source, line=int(self.lines[position]))
        return DataError(f"row {position + 1}: {message}", path=self.source)

    def file_error(self, message: str) -> DataError:
        """A DataError about the file as a whole (or its header)."""
        return DataError(message, path=self.source, line=self.header_line)

    def check(self, mask: npt.ArrayLike, describe: Callable[[int], str]) -> None:
        """Raise at the first True of ``mask``, counting the others; return if all False."""
        hits = np.flatnonzero(np.asarray(mask, dtype=np.bool_))
        if hits.size == 0:
            return
        message = describe(int(hits[0]))
        if hits.size > 1:
            message += f" ({hits.size} {self.noun} have this problem; this is the first)"
        raise self.error(int(hits[0]), message)


def validate_bars(
    frame: pd.DataFrame,
    *,
    source: str,
    timeframe: Timeframe | None = None,
    lines: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Check ``frame`` against the bar contract and return it in canonical form.

    ``frame`` needs a DatetimeIndex (naive means UTC) and the columns open, high, low, close,
    volume. The result has a UTC nanosecond index named ``time`` and float64 columns in that
    order. ``lines`` gives each row's line number in ``source`` for error messages.
    """
    rows = Rows(source, None if lines is None else np.asarray(lines, dtype=np.int64))
    return check_bars(conform(frame, rows), rows, timeframe)


def conform(frame: pd.DataFrame, rows: Rows) -> pd.DataFrame:
    """``frame`` with a UTC ``time`` index and exactly the bar columns as float64."""
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise rows.file_error("bars need a DatetimeIndex of bar times")
    missing = [name for name in BAR_COLUMNS if name not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise rows.file_error(f"missing column(s) {', '.join(missing)} (found {found})")
    index = frame.index
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    try:
        columns = {
            name: frame[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in BAR_COLUMNS
        }
    except (TypeError, ValueError) as exc:
        raise rows.file_error(f"bar columns must hold numbers ({exc})") from None
    return pd.DataFrame(columns, index=pd.DatetimeIndex(index.as_unit("ns"), name=TIME_INDEX))


def check_bars(frame: pd.DataFrame, rows: Rows, timeframe: Timeframe | None) -> pd.DataFrame:
    """Raise the first problem of a conformed frame; return the frame if there is none."""
    if frame.empty:
        raise rows.file_error("there are no bars: add at least one row of data")
    _check_times(pd.DatetimeIndex(frame.index), rows)
    _check_prices(frame, rows)
    _check_ranges(frame, rows)
    _check_volume(frame["volume"].to_numpy(), rows)
    if timeframe is not None:
        _check_spacing(pd.DatetimeIndex(frame.index), rows, timeframe)
    return frame


def describe_time(stamp: pd.Timestamp) -> str:
    """A bar time as people write it: the date alone when it is midnight UTC."""
    if stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def timeframe_for(seconds: int) -> Timeframe:
    """The timeframe that spans ``seconds`` (at least 1), in the largest unit that divides it."""
    unit, size = next((u, s) for u, s in _UNIT_SECONDS if seconds % s == 0)
    return Timeframe(seconds // size, unit)


def _check_times(index: pd.DatetimeIndex, rows: Rows) -> None:
    rows.check(np.asarray(index.isna()), lambda _: "the bar time is missing")
    steps = np.diff(nanos(index))
    if steps.size and bool(np.all(steps <= 0)) and bool(np.any(steps < 0)):
        raise rows.error(1, "the bars are newest first: sort them oldest first (by time)")

    def duplicate(pos: int) -> str:
        return (
            f"duplicate time {describe_time(index[pos])}: the bar on {rows.where(pos - 1)} "
            "has the same time; keep one of the two"
        )

    def backwards(pos: int) -> str:
        return (
            f"time {describe_time(index[pos])} is earlier than the previous bar's "
            f"{describe_time(index[pos - 1])} ({rows.where(pos - 1)}): sort the bars by time"
        )

    rows.check(np.concatenate([[False], steps == 0]), duplicate)
    rows.check(np.concatenate([[False], steps < 0]), backwards)


def _check_prices(frame: pd.DataFrame, rows: Rows) -> None:
    prices = frame[list(PRICE_COLUMNS)].to_numpy()

    def not_finite(pos: int) -> str:
        names = [n for n, v in zip(PRICE_COLUMNS, prices[pos], strict=True) if not np.isfinite(v)]
        return f"{' and '.join(names)} missing or not a finite number: fill in every price"

    def not_positive(pos: int) -> str:
        name, value = next(
            (n, v) for n, v in zip(PRICE_COLUMNS, prices[pos], strict=True) if v <= 0
        )
        return f"{name} is {value:.10g}: prices must be greater than 0"

    rows.check(~np.isfinite(prices).all(axis=1), not_finite)
    rows.check((prices <= 0).any(axis=1), not_positive)


def _check_ranges(frame: pd.DataFrame, rows: Rows) -> None:
    high = frame["high"].to_numpy()
    low = frame["low"].to_numpy()
    rows.check(
        high < low,
        lambda p: f"high {high[p]:.10g} is below low {low[p]:.10g}: check the two are not swapped",
    )
    for name in ("open", "close"):
        _check_inside(name, frame[name].to_numpy(), low, high, rows)


def _check_inside(
    name: str, values: FloatArray, low: FloatArray, high: FloatArray, rows: Rows
) -> None:
    rows.check(
        (values < low) | (values > high),
        lambda p: (
            f"{name} {values[p]:.10g} is outside the bar's range, low {low[p]:.10g} to "
            f"high {high[p]:.10g}: {name} must lie between low and high"
        ),
    )


def _check_volume(volume: FloatArray, rows: Rows) -> None:
    rows.check(
        ~np.isfinite(volume),
        lambda _: (
            "volume is missing or not a finite number: fill it in, "
            "or leave the volume column out to import without volume"
        ),
    )
    rows.check(volume < 0, lambda p: f"volume is {volume[p]:.10g}: volume cannot be negative")


def _check_spacing(index: pd.DatetimeIndex, rows: Rows, timeframe: Timeframe) -> None:
    steps = np.diff(nanos(index))
    if steps.size == 0:
        return
    declared = timeframe.seconds * _NS
    slack = _DST_SLACK_NS if timeframe.seconds >= 86_400 else 0
    # The smallest spacing in the data is the timeframe that would pass this check.
    fits = timeframe_for(max(int(steps.min() // _NS), 1))

    def too_close(pos: int) -> str:
        gap = timeframe_for(max(int(steps[pos - 1] // _NS), 1))
        return (
            f"this bar is {gap} after the previous one ({rows.where(pos - 1)}), closer than "
            f"the declared timeframe {timeframe}: declare the timeframe {fits} "
            f"(--timeframe {fits}), or remove the extra bars"
        )

    rows.check(np.concatenate([[False], steps < declared - slack]), too_close)


def check_not_wider(index: pd.DatetimeIndex, rows: Rows, timeframe: Timeframe) -> None:
    """Refuse bars that are all further apart than the declared timeframe (daily bars
    imported as ``1h``, say). Gaps are normal (nights, weekends, quiet markets), so only a
    file of several bars none of which follows the previous one at the declared spacing is
    refused; a short file cannot tell and passes."""
    steps = np.diff(nanos(index))
    if steps.size < _SPACING_STEPS:
        return
    slack = _DST_SLACK_NS if timeframe.seconds >= 86_400 else 0
    closest = int(steps.argmin())
    if steps[closest] <= timeframe.seconds * _NS + slack:
        return
    found = timeframe_for(max(int(steps[closest] // _NS), 1))
    raise rows.file_error(
        f"the bars are {found} apart or more (the closest two: {rows.where(closest)} and "
        f"{rows.where(closest + 1)}), wider than the declared timeframe {timeframe}: "
        f"declare the timeframe {found} (--timeframe {found})"
    )


def nanos(index: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    """Nanoseconds since the epoch (UTC) of each bar time."""
    naive = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    return np.asarray(naive, "datetime64[ns]").view(np.int64)
