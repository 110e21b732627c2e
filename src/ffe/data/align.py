"""Loading several symbols from a BarSource onto one time axis."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from ffe.data.source import BAR_COLUMNS, BarSource
from ffe.data.validate import describe_time, nanos
from ffe.domain import DataError, MarketData, Timeframe

FloatArray = npt.NDArray[np.float64]
DateLike = str | date | datetime | pd.Timestamp
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def load_market(
    source: BarSource,
    symbols: Sequence[str],
    *,
    start: DateLike | None = None,
    end: DateLike | None = None,
) -> MarketData:
    """Load ``symbols`` aligned on the union of their bar times, NaN where a symbol has no bar.

    ``start`` and ``end`` are inclusive; naive values are UTC, and a bare date as ``end``
    includes that whole day. All symbols must share one timeframe.
    """
    if not symbols:
        raise DataError("no symbols to load: name at least one")
    if len(set(symbols)) != len(symbols):
        raise DataError(f"symbols are named more than once: {', '.join(symbols)}")
    timeframe = _common_timeframe(source, symbols)
    window = _window(start, end)
    frames = [_cut(source.load(symbol), symbol, window, (start, end)) for symbol in symbols]
    times, arrays = _align(frames)
    return MarketData(
        tuple(symbols),
        times,
        arrays["open"],
        arrays["high"],
        arrays["low"],
        arrays["close"],
        arrays["volume"],
        timeframe=timeframe,
    )


def _align(frames: list[pd.DataFrame]) -> tuple[npt.NDArray[np.datetime64], dict[str, FloatArray]]:
    """The union of the frames' times, and ``(T, N)`` arrays per column, NaN where absent."""
    stamps = [nanos(pd.DatetimeIndex(frame.index)) for frame in frames]
    times = np.unique(np.concatenate(stamps))
    arrays = {name: np.full((times.size, len(frames)), np.nan) for name in BAR_COLUMNS}
    for column, (frame, own) in enumerate(zip(frames, stamps, strict=True)):
        rows = np.searchsorted(times, own)
        for name in BAR_COLUMNS:
            arrays[name][rows, column] = frame[name].to_numpy()
    return times.astype("datetime64[ns]"), arrays


def _common_timeframe(source: BarSource, symbols: Sequence[str]) -> Timeframe:
    timeframe = source.timeframe(symbols[0])
    for symbol in symbols[1:]:
        other = source.timeframe(symbol)
        if other != timeframe:
            raise DataError(
                f"cannot mix timeframes: {symbols[0]} has {timeframe} bars but {symbol} has "
                f"{other}; load them separately, or import them with the same timeframe"
            )
    return timeframe


def _window(start: DateLike | None, end: DateLike | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The inclusive window as UTC timestamps; an end given as a bare date covers the day."""
    first = _utc(start) if start is not None else pd.Timestamp.min.tz_localize("UTC")
    last = _utc(end) if end is not None else pd.Timestamp.max.tz_localize("UTC")
    if end is not None and _is_date_only(end):
        last = last + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    if first > last:
        raise DataError(f"the start {start} is after the end {end}: swap them")
    return first, last


def _cut(
    frame: pd.DataFrame,
    symbol: str,
    window: tuple[pd.Timestamp, pd.Timestamp],
    asked: tuple[DateLike | None, DateLike | None],
) -> pd.DataFrame:
    index = pd.DatetimeIndex(frame.index)
    inside: npt.NDArray[np.bool_] = np.asarray((index >= window[0]) & (index <= window[1]))
    if not inside.any():
        start, end = asked
        raise DataError(
            f"{symbol} has no bars from {start or 'the beginning'} to {end or 'the end'}: "
            f"its bars run from {describe_time(index[0])} to {describe_time(index[-1])}; "
            "choose dates inside that range"
        )
    return frame.loc[inside]


def _utc(value: DateLike) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise DataError(f"cannot read the date {value!r}: write it like 2024-01-02") from None
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def _is_date_only(value: DateLike) -> bool:
    if isinstance(value, str):
        return _DATE_ONLY.fullmatch(value.strip()) is not None
    return isinstance(value, date) and not isinstance(value, datetime)
