"""Causal indicators: the value at bar t depends only on bars up to t.

They work column-wise on ``(T, N)`` arrays (one column per symbol) and keep NaN where there
is not yet enough history. Strategies built only from these cannot look ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from ffe.domain.market import FloatArray


def sma(values: FloatArray, window: int) -> FloatArray:
    """Simple moving average over ``window`` bars, equal bit for bit to pandas'
    ``rolling(window).mean()`` (so crossovers agree with peers that use pandas)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return _rolling_mean(array, window)
    out = np.empty(array.shape)
    for column in range(array.shape[1]):
        out[:, column] = _rolling_mean(np.ascontiguousarray(array[:, column]), window)
    return out


def _rolling_mean(values: FloatArray, window: int) -> FloatArray:
    # pandas' own kernel, called without building a Series and a Rolling object each time:
    # a third of the cost, the same bits. Falls back to the public API if pandas moves it.
    if _roll_mean is not None:
        end = np.arange(1, len(values) + 1, dtype=np.int64)
        start = np.maximum(end - window, 0)
        return np.asarray(_roll_mean(values, start, end, window), dtype=np.float64)
    rolled = pd.Series(values).rolling(window).mean().to_numpy()
    return np.asarray(rolled, dtype=np.float64)


def _load_roll_mean() -> Callable[..., FloatArray] | None:
    try:
        from pandas._libs.window.aggregations import roll_mean  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - only on a pandas that reorganised its internals
        return None
    return cast("Callable[..., FloatArray]", roll_mean)


_roll_mean = _load_roll_mean()


def trailing_return(values: FloatArray, lookback: int) -> FloatArray:
    """Simple return over the last ``lookback`` bars; NaN for the first ``lookback`` bars."""
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1, got {lookback}")
    out = np.full(values.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[lookback:] = values[lookback:] / values[:-lookback] - 1.0
    return out


def crossed_above(fast: FloatArray, slow: FloatArray) -> npt.NDArray[np.bool_]:
    """True at bar t when ``fast`` was below ``slow`` at t-1 and is above it at t.

    Both comparisons are strict, so touching without crossing is not a cross, and NaN
    never crosses.
    """
    out = np.zeros(fast.shape, dtype=bool)
    out[1:] = (fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])
    return out
