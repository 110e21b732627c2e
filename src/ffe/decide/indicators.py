"""Causal indicators: the value at bar t depends only on bars up to t.

They work column-wise on ``(T, N)`` arrays (one column per symbol) and keep NaN where there
is not yet enough history. Strategies built only from these cannot look ahead.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from ffe.domain.market import FloatArray


def sma(values: FloatArray, window: int) -> FloatArray:
    """Simple moving average over ``window`` bars (pandas' rolling mean, bit for bit)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    frame = pd.DataFrame(values) if values.ndim == 2 else pd.Series(values)
    return np.asarray(frame.rolling(window).mean().to_numpy(), dtype=np.float64)


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
