"""Aligned market data and the point-in-time view strategies are given.

``MarketData`` holds bars of one or many symbols on one time axis as ``(T, N)`` float
arrays: row ``t`` is a bar time, column ``j`` a symbol. A symbol with no bar at a time has
NaN there. Prices are never mutated: the arrays are made read-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from ffe.domain.errors import DataError
from ffe.domain.timeframe import Timeframe

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.datetime64]

FIELDS = ("open", "high", "low", "close", "volume")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_datetime(nanoseconds: int) -> datetime:
    """The timezone-aware UTC datetime of a datetime64[ns] value given as an integer
    (microsecond precision, floored like numpy's ns -> us cast)."""
    # Positional timedelta arguments: this runs once per order in a backtest.
    return _EPOCH + timedelta(0, 0, nanoseconds // 1000)


def _frozen(values: npt.ArrayLike, dtype: type = np.float64) -> FloatArray:
    array: FloatArray = np.array(values, dtype=dtype)  # always a private copy
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class MarketData:
    """Bars for ``symbols`` on the shared time axis ``times`` (UTC, datetime64[ns])."""

    symbols: tuple[str, ...]
    times: TimeArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    timeframe: Timeframe = field(default_factory=lambda: Timeframe(1, "d"))
    mark: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        shape = (len(self.times), len(self.symbols))
        set_field = object.__setattr__
        set_field(self, "times", np.array(self.times, dtype="datetime64[ns]"))
        self.times.flags.writeable = False
        for name in FIELDS:
            array = _frozen(getattr(self, name))
            if array.shape != shape:
                raise DataError(f"{name} has shape {array.shape}, expected {shape}")
            set_field(self, name, array)
        if len(self.times) > 1 and not bool(np.all(np.diff(self.times) > np.timedelta64(0))):
            raise DataError("bar times must be strictly increasing")
        set_field(self, "mark", _frozen(_forward_fill(self.close)))

    @property
    def n_bars(self) -> int:
        return len(self.times)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def time_of(self, bar: int) -> datetime:
        """The UTC datetime of bar ``bar``."""
        return utc_datetime(self.times.view(np.int64).item(bar))

    def fingerprint(self) -> str:
        """A SHA-256 over symbols, timeframe, times and every price and volume: two runs with
        the same fingerprint saw the same bars."""
        digest = hashlib.sha256()
        digest.update("\x1f".join((*self.symbols, str(self.timeframe))).encode())
        digest.update(np.ascontiguousarray(self.times).view(np.int64).tobytes())
        for name in FIELDS:
            digest.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        return digest.hexdigest()

    def index_of(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise DataError(f"symbol {symbol!r} is not in this market data") from None

    def select(self, start: int, stop: int) -> MarketData:
        """Bars ``start:stop`` (row positions) as a new MarketData."""
        return MarketData(
            self.symbols,
            self.times[start:stop],
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
            timeframe=self.timeframe,
        )

    def history(self) -> History:
        """A view of all bars, for strategies that compute every bar at once."""
        return History(self, self.n_bars)


def finite_marks(mark: FloatArray) -> FloatArray:
    """``mark`` (bars x symbols, carried forward) with no NaN, for marking a book to market:
    NaN would poison every sum it enters. Carried forward, NaN can only lead a column (before
    a symbol's first bar), so a first row without NaN means there is none and no copy is
    made; otherwise the leading gaps read 0 (nothing can be held there)."""
    if mark.size and np.isnan(mark[0]).any():
        return np.nan_to_num(mark)
    return mark


def _forward_fill(values: FloatArray) -> FloatArray:
    """Last known value per column; NaN before a column's first value."""
    rows = np.arange(values.shape[0])[:, None]
    last_valid = np.where(np.isnan(values), 0, rows)
    np.maximum.accumulate(last_valid, axis=0, out=last_valid)
    filled = values[last_valid, np.arange(values.shape[1])]
    return np.asarray(filled, dtype=np.float64)


class History:
    """Bars ``0 .. length-1`` of a MarketData: everything a strategy may see.

    The arrays it hands out are read-only views that end at the current bar, so a strategy
    cannot read the future through them.
    """

    __slots__ = ("_length", "_market")

    def __init__(self, market: MarketData, length: int) -> None:
        if not 0 < length <= market.n_bars:
            raise ValueError(f"history length {length} outside 1..{market.n_bars}")
        self._market = market
        self._length = length

    def __len__(self) -> int:
        return self._length

    def tail(self, bars: int) -> History:
        """The last ``bars`` bars of this history, as a history of their own (a copy)."""
        start = max(0, self._length - bars)
        return History(self._market.select(start, self._length), self._length - start)

    @property
    def symbols(self) -> Sequence[str]:
        return self._market.symbols

    @property
    def timeframe(self) -> Timeframe:
        return self._market.timeframe

    @property
    def times(self) -> TimeArray:
        return self._market.times[: self._length]

    @property
    def open(self) -> FloatArray:
        return self._market.open[: self._length]

    @property
    def high(self) -> FloatArray:
        return self._market.high[: self._length]

    @property
    def low(self) -> FloatArray:
        return self._market.low[: self._length]

    @property
    def close(self) -> FloatArray:
        return self._market.close[: self._length]

    @property
    def volume(self) -> FloatArray:
        return self._market.volume[: self._length]

    @property
    def mark(self) -> FloatArray:
        """Close prices carried forward over bars where a symbol did not trade."""
        return self._market.mark[: self._length]
