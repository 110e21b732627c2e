"""The Forecaster port: what every model in the ensemble (statistical, ML, LLM) speaks.

Every forecaster predicts the cumulative log return from the origin (the last bar it was
given) over the next ``1..horizon`` bars, as a mean, a standard deviation and central
prediction intervals at ``LEVELS``. Returns rather than prices keep the numbers comparable
across symbols and let the decision step read them directly.

A forecaster is fitted on a window of history (``fit``), then asked for forecasts at later
origins with the fitted parameters (``forecast``): the series it is given ends at the
origin, so it can update its state on the bars since the fit without refitting. Neither call
may look at anything the series does not hold; the look-ahead tests poison the bars after an
origin and check that nothing up to it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from scipy.stats import norm

from ffe.domain.errors import FfeError
from ffe.domain.market import FloatArray, TimeArray

LEVELS: tuple[int, ...] = (80, 95)
"""Central prediction-interval levels (percent) every forecast carries."""
_Z = tuple(float(norm.ppf(0.5 + level / 200)) for level in LEVELS)


class ForecastError(FfeError):
    """A forecaster could not produce a forecast (it is left out of the ensemble for it)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One symbol's history up to an origin: log prices and their bar times.

    ``values`` are natural logs of prices carried forward over missing bars; the last value
    is the origin.
    """

    symbol: str
    values: FloatArray
    times: TimeArray

    def __post_init__(self) -> None:
        if len(self.values) != len(self.times):
            raise ValueError(f"{len(self.values)} values but {len(self.times)} times")

    def __len__(self) -> int:
        return len(self.values)

    def upto(self, length: int) -> Series:
        """The first ``length`` bars (a view, no copy)."""
        return Series(self.symbol, self.values[:length], self.times[:length])

    @property
    def returns(self) -> FloatArray:
        """One-bar log returns (one fewer than values)."""
        return np.diff(self.values)


@dataclass(frozen=True, slots=True)
class Forecast:
    """Cumulative log return from the origin over the next ``1..horizon`` bars.

    ``mean`` and ``sd`` have shape ``(horizon,)``; ``lower[i]`` and ``upper[i]`` are the
    bounds of the central interval at ``LEVELS[i]``, each of shape ``(horizon,)``.
    """

    mean: FloatArray
    sd: FloatArray
    lower: tuple[FloatArray, ...]
    upper: tuple[FloatArray, ...]

    @property
    def horizon(self) -> int:
        return len(self.mean)

    @classmethod
    def normal(cls, mean: FloatArray, sd: FloatArray) -> Forecast:
        """A forecast whose intervals are those of a normal distribution."""
        mean = np.asarray(mean, dtype=np.float64)
        sd = np.maximum(np.asarray(sd, dtype=np.float64), 0.0)
        lower, upper = [], []
        for z in _Z:
            lower.append(mean - z * sd)
            upper.append(mean + z * sd)
        return cls(mean, sd, tuple(lower), tuple(upper))

    def check(self, name: str, horizon: int) -> Forecast:
        """Raise ForecastError unless the forecast is finite and has ``horizon`` steps."""
        arrays = (self.mean, self.sd, *self.lower, *self.upper)
        if any(a.shape != (horizon,) for a in arrays):
            raise ForecastError(f"{name} returned a forecast of the wrong shape")
        if not all(np.isfinite(a).all() for a in arrays):
            raise ForecastError(f"{name} returned a non-finite forecast")
        return self


def sd_from_interval(lower: FloatArray, upper: FloatArray, level: int) -> FloatArray:
    """The standard deviation of the normal whose central ``level`` interval is given."""
    z = float(norm.ppf(0.5 + level / 200))
    return np.maximum((np.asarray(upper) - np.asarray(lower)) / (2 * z), 0.0)


@runtime_checkable
class Forecaster(Protocol):
    """A model in the ensemble. See the module docstring for the contract."""

    name: ClassVar[str]

    def min_history(self) -> int:
        """Bars needed before ``fit`` can be called."""
        ...

    def fit(self, series: Series) -> None:
        """Estimate parameters on ``series`` (the training window, ending at the fit time)."""
        ...

    def forecast(self, series: Series, horizon: int) -> Forecast:
        """Forecast from the end of ``series`` with the fitted parameters (no refit).

        Raises ForecastError when the model cannot forecast (not fitted, failed)."""
        ...
