"""The built-in forecasters: statsforecast's statistical models, LightGBM on lagged returns
(trained through mlforecast), and a GARCH(1,1) volatility model (arch).

Statistical models are fitted on log prices, so ``Naive`` is the random walk every other
model is measured against. Between refits, each model is applied to the newest bars with
the parameters it was fitted with: statsforecast's ``forward`` for the models that have it
(AutoETS, AutoARIMA, AutoTheta), arch's ``forecast(params=...)`` for GARCH, the fitted
boosters for LightGBM. The random walks have no parameters to keep.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ffe.forecast.base import LEVELS, Forecast, Forecaster, ForecastError, Series, sd_from_interval

# -- statsforecast --------------------------------------------------------------------------


class _StatsForecastModel:
    """A statsforecast model on log prices; subclasses name the model and how to build it."""

    name: ClassVar[str]
    _has_forward: ClassVar[bool] = True

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self._model: Any = None

    def _build(self) -> Any:
        raise NotImplementedError

    def min_history(self) -> int:
        return 30

    def fit(self, series: Series) -> None:
        model = self._build()
        if self._has_forward:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    model.fit(np.ascontiguousarray(series.values[-self.window :]))
                except Exception as exc:  # the library raises plain exceptions on bad data
                    self._model = None
                    raise ForecastError(f"{self.name}: fit failed: {exc}") from exc
        self._model = model

    def forecast(self, series: Series, horizon: int) -> Forecast:
        if self._model is None:
            raise ForecastError(f"{self.name} is not fitted")
        values = np.ascontiguousarray(series.values[-self.window :])
        level = list(LEVELS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if self._has_forward:
                    out = self._model.forward(y=values, h=horizon, level=level)
                else:
                    out = self._model.forecast(y=values, h=horizon, level=level)
            except Exception as exc:
                raise ForecastError(f"{self.name}: forecast failed: {exc}") from exc
        origin = values[-1]
        lower = tuple(np.asarray(out[f"lo-{lv}"], dtype=np.float64) - origin for lv in LEVELS)
        upper = tuple(np.asarray(out[f"hi-{lv}"], dtype=np.float64) - origin for lv in LEVELS)
        mean = np.asarray(out["mean"], dtype=np.float64) - origin
        sd = sd_from_interval(lower[-1], upper[-1], LEVELS[-1])
        return Forecast(mean, sd, lower, upper).check(self.name, horizon)


class NaiveForecaster(_StatsForecastModel):
    """The random walk: tomorrow's log price is today's."""

    name: ClassVar[str] = "naive"
    _has_forward: ClassVar[bool] = False

    def _build(self) -> Any:
        from statsforecast.models import Naive

        return Naive()


class DriftForecaster(_StatsForecastModel):
    """A random walk with the window's average drift."""

    name: ClassVar[str] = "drift"
    _has_forward: ClassVar[bool] = False

    def _build(self) -> Any:
        from statsforecast.models import RandomWalkWithDrift

        return RandomWalkWithDrift()


class EtsForecaster(_StatsForecastModel):
    name: ClassVar[str] = "auto_ets"

    def _build(self) -> Any:
        from statsforecast.models import AutoETS

        return AutoETS(season_length=1)


class ArimaForecaster(_StatsForecastModel):
    name: ClassVar[str] = "auto_arima"

    def _build(self) -> Any:
        from statsforecast.models import AutoARIMA

        # The approximate (CSS) search over small orders: about 2.5x faster to fit, and on
        # daily log prices it picks the same (0,1,0)-like models.
        return AutoARIMA(season_length=1, max_p=2, max_q=2, approximation=True)


class ThetaForecaster(_StatsForecastModel):
    name: ClassVar[str] = "auto_theta"

    def _build(self) -> Any:
        from statsforecast.models import AutoTheta

        return AutoTheta(season_length=1)


# -- GARCH ------------------------------------------------------------------------------------


class GarchForecaster:
    """Constant mean with GARCH(1,1) volatility on percent log returns (arch).

    Its spread is what the decision step sizes positions with (volatility targeting)."""

    name: ClassVar[str] = "garch"

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self._params: Any = None

    def min_history(self) -> int:
        return 100

    def fit(self, series: Series) -> None:
        from arch import arch_model

        returns = 100.0 * np.diff(series.values[-self.window :])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # arch rejects NaN already when the model is built
                model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
                # show_warning=False: arch re-enables its ConvergenceWarning over our filter.
                fitted = model.fit(disp="off", show_warning=False)
            except Exception as exc:
                self._params = None
                raise ForecastError(f"garch: fit failed: {exc}") from exc
        if fitted.convergence_flag != 0:
            self._params = None
            raise ForecastError("garch: the optimizer did not converge")
        self._params = fitted.params.to_numpy()

    def variance(self, series: Series, horizon: int) -> tuple[float, np.ndarray[Any, Any]]:
        """Per-bar mean and variance forecasts (log-return units) for steps 1..horizon."""
        from arch import arch_model

        if self._params is None:
            raise ForecastError("garch is not fitted")
        returns = 100.0 * np.diff(series.values[-self.window :])
        try:
            model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
            out = model.forecast(params=self._params, horizon=horizon, reindex=False)
        except Exception as exc:
            raise ForecastError(f"garch: forecast failed: {exc}") from exc
        return float(self._params[0]) / 100.0, out.variance.to_numpy()[-1] / 1e4

    def forecast(self, series: Series, horizon: int) -> Forecast:
        mu, variance = self.variance(series, horizon)
        steps = np.arange(1, horizon + 1, dtype=np.float64)
        return Forecast.normal(mu * steps, np.sqrt(np.cumsum(variance))).check(self.name, horizon)


# -- LightGBM on lagged returns -----------------------------------------------------------

_LAGS = (1, 2, 3, 5, 10, 20)
_VOL_HALF_LIFE = 11.0  # bars; an EWMA of squared returns close to RiskMetrics' 0.94 decay


class LightGbmForecaster:
    """Gradient boosting on lagged log returns, one model per step ahead (mlforecast's direct
    strategy). It forecasts the mean; the spread is the recent EWMA volatility (sqrt of time).

    mlforecast builds the training features and fits; forecasts compute the same features
    for the origin with numpy and call the fitted boosters, which is about fifty times
    faster than ``MLForecast.predict`` per origin (the two are checked against each other in
    the tests).
    """

    name: ClassVar[str] = "lightgbm"

    def __init__(self, window: int = 500, max_horizon: int = 5, n_estimators: int = 60) -> None:
        self.window = window
        self.max_horizon = max_horizon
        self.n_estimators = n_estimators
        self._models: list[Any] = []
        self._columns: list[str] = []

    def min_history(self) -> int:
        return 120

    def _mlforecast(self) -> Any:
        from lightgbm import LGBMRegressor
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import RollingMean, RollingStd

        booster = LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=0.05,
            num_leaves=8,
            min_child_samples=40,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            n_jobs=1,
            random_state=0,
            deterministic=True,
            verbose=-1,
        )
        return MLForecast(
            models={"lgbm": booster},
            freq=1,
            lags=list(_LAGS),
            lag_transforms={1: [RollingMean(5), RollingMean(20), RollingStd(20)]},
        )

    def fit(self, series: Series) -> None:
        import pandas as pd

        returns = np.diff(series.values[-self.window :])
        frame = pd.DataFrame({"unique_id": 0, "ds": np.arange(len(returns)), "y": returns})
        forecaster = self._mlforecast()
        try:
            forecaster.fit(frame, max_horizon=self.max_horizon)
        except Exception as exc:
            self._models = []
            raise ForecastError(f"lightgbm: fit failed: {exc}") from exc
        by_step = forecaster.models_["lgbm"]  # {step: fitted regressor}
        self._models = [by_step[step].booster_ for step in sorted(by_step)]
        self._columns = list(forecaster.ts.features_order_)
        self._fitted = forecaster  # kept for the equivalence test

    def features(self, returns: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The feature row for forecasting from the end of ``returns``, in training order."""
        values = {f"lag{lag}": returns[-lag] for lag in _LAGS}
        values["rolling_mean_lag1_window_size5"] = returns[-5:].mean()
        values["rolling_mean_lag1_window_size20"] = returns[-20:].mean()
        values["rolling_std_lag1_window_size20"] = returns[-20:].std(ddof=1)
        return np.array([[values[name] for name in self._columns]], dtype=np.float64)

    def forecast(self, series: Series, horizon: int) -> Forecast:
        if not self._models:
            raise ForecastError("lightgbm is not fitted")
        if horizon > self.max_horizon:
            raise ForecastError(f"lightgbm was trained for {self.max_horizon} steps, not {horizon}")
        returns = np.diff(series.values[-self.window :])
        row = self.features(returns)
        # One row: a booster's predict otherwise starts OpenMP threads for it (~100x slower).
        steps = np.array(
            [float(model.predict(row, num_threads=1)[0]) for model in self._models[:horizon]]
        )
        weights = 0.5 ** (np.arange(len(returns))[::-1] / _VOL_HALF_LIFE)
        volatility = math.sqrt(float(np.dot(weights, returns**2) / weights.sum()))
        sd = volatility * np.sqrt(np.arange(1, horizon + 1, dtype=np.float64))
        return Forecast.normal(np.cumsum(steps), sd).check(self.name, horizon)


# -- registry ---------------------------------------------------------------------------------


_MODELS: dict[str, Callable[..., Forecaster]] = {
    model.name: model
    for model in (
        NaiveForecaster,
        DriftForecaster,
        EtsForecaster,
        ArimaForecaster,
        ThetaForecaster,
        LightGbmForecaster,
        GarchForecaster,
    )
}

BASELINE = NaiveForecaster.name
"""The random walk every model is measured against."""

DEFAULT_MODELS: tuple[str, ...] = tuple(_MODELS)


def available_models() -> list[str]:
    return list(_MODELS)


def make_forecaster(name: str, window: int = 500, max_horizon: int = 5) -> Forecaster:
    """Build a built-in forecaster by name."""
    factory = _MODELS.get(name)
    if factory is None:
        raise ForecastError(f"unknown model {name!r}; available: {', '.join(_MODELS)}")
    if factory is LightGbmForecaster:
        return LightGbmForecaster(window=window, max_horizon=max_horizon)
    return factory(window=window)


def parse_models(text: str | None) -> tuple[str, ...]:
    """``"naive,auto_ets"`` → ("naive", "auto_ets"); None or "" → every model."""
    if not text:
        return DEFAULT_MODELS
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in _MODELS]
    if unknown:
        raise ForecastError(f"unknown model {', '.join(unknown)}; available: {', '.join(_MODELS)}")
    return names
