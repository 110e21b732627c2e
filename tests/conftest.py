"""Shared fixtures. Kept small on purpose: most tests build what they need inline."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from ffe.domain import MarketData

MarketFactory = Callable[..., MarketData]


def _make_market(
    close: Sequence[float] | np.ndarray,
    *,
    open_: Sequence[float] | np.ndarray | None = None,
    symbols: Sequence[str] | None = None,
    start: str = "2020-01-01",
) -> MarketData:
    """Daily bars from closes; opens default to the previous close (first: the close)."""
    closes = np.asarray(close, dtype=float)
    if closes.ndim == 1:
        closes = closes[:, None]
    if open_ is None:
        opens = np.vstack([closes[:1], closes[:-1]])
    else:
        opens = np.asarray(open_, dtype=float).reshape(closes.shape)
    highs = np.fmax(opens, closes) * 1.01
    lows = np.fmin(opens, closes) * 0.99
    n_bars, n_symbols = closes.shape
    names = tuple(symbols or [f"S{i}" for i in range(n_symbols)])
    times = np.datetime64(start, "ns") + np.arange(n_bars) * np.timedelta64(1, "D")
    return MarketData(names, times, opens, highs, lows, closes, np.ones(closes.shape))


@pytest.fixture
def make_market() -> MarketFactory:
    return _make_market
