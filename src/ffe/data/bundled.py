"""Real daily bars that ship inside the ``arch`` package: no network, no key, no setup."""

from __future__ import annotations

import functools

import pandas as pd

from ffe.data.source import unknown_symbol
from ffe.data.validate import validate_bars
from ffe.domain import Timeframe

BUNDLED_SYMBOLS = ("NASDAQ", "SP500")
DAILY = Timeframe(1, "d")


class BundledBarSource:
    """Daily bars of the S&P 500 (``SP500``) and NASDAQ Composite (``NASDAQ``), 1999–2018."""

    def symbols(self) -> list[str]:
        """``NASDAQ`` and ``SP500``."""
        return list(BUNDLED_SYMBOLS)

    def timeframe(self, symbol: str) -> Timeframe:
        """Always 1d."""
        self._check(symbol)
        return DAILY

    def load(self, symbol: str) -> pd.DataFrame:
        """The bars of ``symbol``, a fresh copy the caller may change."""
        self._check(symbol)
        return _load(symbol).copy()

    def _check(self, symbol: str) -> None:
        if symbol not in BUNDLED_SYMBOLS:
            raise unknown_symbol(symbol, BUNDLED_SYMBOLS)


def import_libraries() -> None:
    """Import the packages the bundled bars come from (arch, with scipy and statsmodels), as
    loading them the first time would: for a server that would rather pay it at start-up."""
    from arch.data import nasdaq, sp500  # noqa: F401


@functools.cache
def _load(symbol: str) -> pd.DataFrame:
    # arch pulls in scipy and statsmodels; importing it here keeps `ffe --help` fast.
    from arch.data import nasdaq, sp500

    raw = {"SP500": sp500, "NASDAQ": nasdaq}[symbol].load()
    # Close, not Adj Close: an index has no dividends or splits to adjust for, and Close is
    # what the open, high and low belong to.
    frame = raw[["Open", "High", "Low", "Close", "Volume"]].rename(columns=str.lower)
    return validate_bars(frame, source=f"arch.data.{symbol.lower()}", timeframe=DAILY)
