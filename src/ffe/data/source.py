"""The ``BarSource`` port and the frame contract every source honours.

A bar frame is a ``pandas.DataFrame`` whose index is a tz-aware UTC ``DatetimeIndex`` named
``time`` (nanosecond unit, strictly increasing) and whose columns are exactly
``open, high, low, close, volume`` as float64, validated by ``ffe.data.validate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import pandas as pd

from ffe.domain import DataError, Timeframe

BAR_COLUMNS = ("open", "high", "low", "close", "volume")
TIME_INDEX = "time"


@runtime_checkable
class BarSource(Protocol):
    """Where bars come from: a set of symbols, each with one timeframe and a bar frame."""

    def symbols(self) -> list[str]:
        """Every symbol this source can load, sorted."""
        ...

    def timeframe(self, symbol: str) -> Timeframe:
        """The bar length of ``symbol``; DataError if the symbol is unknown."""
        ...

    def load(self, symbol: str) -> pd.DataFrame:
        """The validated bar frame of ``symbol``; DataError if the symbol is unknown."""
        ...


def unknown_symbol(symbol: str, available: Iterable[str]) -> DataError:
    """The error for a symbol a source does not have, listing the ones it does."""
    names = ", ".join(sorted(available)) or "none"
    return DataError(f"unknown symbol {symbol!r}: available symbols are {names}")
