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


def rsi(values: FloatArray, window: int = 14) -> FloatArray:
    """Relative strength index (0 to 100) with Wilder's smoothing: the average gain and loss
    start as the plain mean of the first ``window`` changes, then each new change enters
    with weight ``1 / window``. NaN until a column has ``window`` changes; 50 where prices
    did not move at all. Expects prices carried forward over missing bars (a NaN after a
    column's first value makes the rest of it NaN)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return _rsi(array, window)
    out = np.empty(array.shape)
    for column in range(array.shape[1]):
        out[:, column] = _rsi(array[:, column], window)
    return out


def _rsi(values: FloatArray, window: int) -> FloatArray:
    out = np.full(values.shape, np.nan)
    known = np.flatnonzero(np.isfinite(values))
    if known.size == 0 or len(values) - known[0] <= window:
        return out
    first = int(known[0])
    change = np.diff(values[first:])
    up = _wilder(np.maximum(change, 0.0), window)
    down = _wilder(np.maximum(-change, 0.0), window)
    total = up + down
    with np.errstate(invalid="ignore", divide="ignore"):
        out[first + window :] = np.where(total == 0, 50.0, 100.0 * up / total)
    return out


def _wilder(changes: FloatArray, window: int) -> FloatArray:
    """Wilder's running average from the ``window``-th change on (an exponential average
    with weight ``1 / window``, seeded with the mean of the first ``window``)."""
    # Imported here: scipy.signal costs most of a second to import, and every process that
    # runs a strategy imports this module (each worker of a sweep pool among them), while
    # only the RSI needs it.
    from scipy.signal import lfilter

    seed = float(changes[:window].mean())
    weight = 1.0 / window
    rest, _ = lfilter([weight], [1.0, weight - 1.0], changes[window:], zi=[(1 - weight) * seed])
    return np.concatenate([[seed], np.asarray(rest, dtype=np.float64)])


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
