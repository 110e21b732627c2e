"""Honest forecast evaluation: scaled errors, proper scores, interval checks and the
Diebold–Mariano test of equal predictive accuracy.

Pure functions over numpy arrays. Every input is checked: NaN, empty or mismatched arrays
raise ValueError naming the argument, so a silent NaN never turns into a good score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scoringrules as sr
from scipy import stats

from ffe.domain.market import FloatArray

Kernel = Literal["rectangular", "bartlett"]


def _finite(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty: pass at least one value")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values: drop or fill them first")
    return array


def _aligned(**arrays: npt.ArrayLike) -> list[FloatArray]:
    """The arrays as finite float64, all of the first one's shape."""
    checked = [_finite(name, values) for name, values in arrays.items()]
    names = list(arrays)
    for name, array in zip(names[1:], checked[1:], strict=True):
        if array.shape != checked[0].shape:
            raise ValueError(
                f"{name} has shape {array.shape} but {names[0]} has {checked[0].shape}: "
                "pass one value per forecast"
            )
    return checked


def mase(actual: npt.ArrayLike, forecast: npt.ArrayLike, scale: npt.ArrayLike) -> float:
    """Mean absolute scaled error: the mean of ``|actual - forecast| / scale``.

    ``scale`` is a positive scalar, one scale per forecast (the shape of ``actual``), or one
    per origin (shape ``actual.shape[:k]``, spread over the trailing axes, e.g. one per row
    of an ``(origins, horizon)`` array). ``naive_scale`` gives the scale known at each
    origin; below 1, the forecast beats the in-sample one-step naive forecast.
    """
    actual_, forecast_ = _aligned(actual=actual, forecast=forecast)
    scale_ = _finite("scale", scale)
    if scale_.shape != actual_.shape[: scale_.ndim]:
        raise ValueError(
            f"scale has shape {scale_.shape}; pass a scalar, or an array of shape "
            f"{actual_.shape} or a leading part of it"
        )
    if (scale_ <= 0).any():
        raise ValueError("scale must be positive (a zero naive scale means a flat window)")
    scale_ = scale_.reshape(scale_.shape + (1,) * (actual_.ndim - scale_.ndim))
    return float(np.mean(np.abs(actual_ - forecast_) / scale_))


def naive_scale(values: npt.ArrayLike, window: int, origins: npt.ArrayLike) -> FloatArray:
    """For each origin ``t``, the mean ``|diff|`` of ``values[t - window + 1 .. t]``.

    That is the in-sample mean absolute error of the one-step naive forecast over the
    ``window`` values ending at the origin (``window - 1`` differences): nothing after ``t``
    is read. Origins must be integers in ``[window - 1, len(values) - 1]``.
    """
    series = _finite("values", values)
    if series.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {series.shape}")
    if window < 2:
        raise ValueError(f"window must be at least 2 (one difference), got {window}")
    index = np.asarray(origins)
    if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError("origins must be a non-empty 1-D array of integer positions")
    if index.min() < window - 1 or index.max() >= len(series):
        raise ValueError(
            f"origins must lie in [{window - 1}, {len(series) - 1}] so that each has "
            f"{window} values up to it; got {index.min()} to {index.max()}"
        )
    steps = np.abs(np.diff(series))
    windows = np.lib.stride_tricks.sliding_window_view(steps, window - 1)
    return np.asarray(windows[index - window + 1].mean(axis=1), dtype=np.float64)


def crps_normal(actual: npt.ArrayLike, mean: npt.ArrayLike, sd: npt.ArrayLike) -> FloatArray:
    """Per-forecast CRPS of a normal predictive distribution (lower is better).

    A zero ``sd`` is a point forecast, whose CRPS is the absolute error ``|actual - mean|``
    (the limit as ``sd`` goes to 0).
    """
    actual_, mean_, sd_ = _aligned(actual=actual, mean=mean, sd=sd)
    if (sd_ < 0).any():
        raise ValueError("sd must be non-negative")
    point = sd_ == 0
    # scoringrules divides by sd: give point forecasts a harmless sd and replace their score.
    scores = sr.crps_normal(actual_, mean_, np.where(point, 1.0, sd_), backend="numpy")
    return np.where(point, np.abs(actual_ - mean_), np.asarray(scores, dtype=np.float64))


def _interval(
    actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike
) -> list[FloatArray]:
    checked = _aligned(actual=actual, lower=lower, upper=upper)
    if (checked[1] > checked[2]).any():
        raise ValueError("lower exceeds upper for some forecasts: pass lower <= upper")
    return checked


def interval_coverage(actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """The fraction of actuals inside their closed interval ``[lower, upper]``."""
    actual_, lower_, upper_ = _interval(actual, lower, upper)
    return float(np.mean((lower_ <= actual_) & (actual_ <= upper_)))


def interval_score(
    actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, level: float
) -> FloatArray:
    """Per-forecast interval (Winkler) score of central intervals at ``level`` percent.

    ``(upper - lower) + (2 / alpha) * distance from the interval to the actual``, with
    ``alpha = 1 - level / 100``: width plus a penalty for a miss (lower is better).
    """
    if not 0 < level < 100:
        raise ValueError(f"level is a percentage strictly between 0 and 100, got {level}")
    actual_, lower_, upper_ = _interval(actual, lower, upper)
    scores = sr.interval_score(actual_, lower_, upper_, 1 - level / 100, backend="numpy")
    return np.asarray(scores, dtype=np.float64).reshape(actual_.shape)


@dataclass(frozen=True, slots=True)
class DMResult:
    """A Diebold–Mariano test of forecasts A and B (see ``diebold_mariano``)."""

    statistic: float
    """HLN-corrected statistic; negative when A's mean loss is lower."""
    p_value: float
    """Two-sided: the chance of a statistic this far from 0 if A and B are equally good."""
    p_value_a_better: float
    """One-sided, for "A has the lower expected loss" (small when ``mean_diff < 0``)."""
    mean_diff: float
    """Mean of ``loss_a - loss_b``."""
    n: int
    """Number of paired losses."""
    kernel: Kernel
    """Which long-run variance estimate was used."""


def diebold_mariano(loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, horizon: int = 1) -> DMResult:
    r"""Test equal predictive accuracy of A and B from their losses at the same origins.

    With ``d_t = loss_a_t - loss_b_t`` (t = 1..n), ``d̄`` its mean and ``h = horizon``:

    - autocovariances ``γ_k = (1/n) Σ_{t=k+1..n} (d_t - d̄)(d_{t-k} - d̄)`` for k < h
      (h-step forecast errors are serially correlated up to lag h - 1);
    - long-run variance ``V = γ_0 + 2 Σ_{k=1..h-1} γ_k`` (rectangular kernel); if that is
      not positive, the Bartlett (Newey–West) ``V = γ_0 + 2 Σ (1 - k/h) γ_k``, never negative;
    - ``DM = d̄ / sqrt(V / n)``, and the Harvey–Leybourne–Newbold statistic
      ``DM* = DM · sqrt((n + 1 - 2h + h(h - 1)/n) / n)``;
    - ``p_value = 2 · P(T > |DM*|)`` and ``p_value_a_better = P(T < DM*)``, T ~ Student t
      with n - 1 degrees of freedom.

    A differential constant up to rounding has ``V = 0``: the statistic is 0 when it is
    zero (identical losses: p-value 1) and ±inf otherwise (p-value 0). Needs ``n > horizon``.
    """
    a, b = _aligned(loss_a=loss_a, loss_b=loss_b)
    if a.ndim != 1:
        raise ValueError(f"losses must be 1-D (one per origin), got shape {a.shape}")
    n = len(a)
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if n <= horizon:
        raise ValueError(f"horizon {horizon} needs more than {horizon} losses, got {n}")
    diff = a - b
    mean_diff = float(diff.mean())
    rounding = 4 * np.finfo(np.float64).eps * max(np.abs(a).max(), np.abs(b).max())
    variance, kernel = _long_run_variance(diff, horizon, rounding)
    statistic = _hln_statistic(mean_diff, variance, n, horizon)
    t = stats.t(df=n - 1)
    return DMResult(
        statistic=statistic,
        p_value=float(2 * t.sf(abs(statistic))),
        p_value_a_better=float(t.cdf(statistic)),
        mean_diff=mean_diff,
        n=n,
        kernel=kernel,
    )


def _long_run_variance(diff: FloatArray, horizon: int, rounding: float) -> tuple[float, Kernel]:
    if np.ptp(diff) <= rounding:
        # Constant up to the rounding of the losses: no variance to estimate.
        return 0.0, "rectangular"
    centred = diff - diff.mean()
    n = len(diff)
    lags = np.arange(horizon)
    gamma = np.array([centred[k:] @ centred[: n - k] for k in lags]) / n
    rectangular = float(gamma[0] + 2 * gamma[1:].sum())
    if rectangular > 0:
        return rectangular, "rectangular"
    weights = 1 - lags[1:] / horizon
    return float(gamma[0] + 2 * (weights * gamma[1:]).sum()), "bartlett"


def _hln_statistic(mean_diff: float, variance: float, n: int, horizon: int) -> float:
    if variance <= 0:
        return float(np.sign(mean_diff) * np.inf) if mean_diff != 0 else 0.0
    correction = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    return float(mean_diff / np.sqrt(variance / n) * correction)
