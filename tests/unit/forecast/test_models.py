"""The built-in forecasters: shape and sanity of every model's forecast, the random walks
against closed forms, GARCH against its unconditional variance, LightGBM's numpy feature
path against mlforecast's own predict, and bad data that must never crash."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest

from ffe.forecast.base import LEVELS, Forecast, ForecastError, Series
from ffe.forecast.models import (
    BASELINE,
    DEFAULT_MODELS,
    GarchForecaster,
    LightGbmForecaster,
    available_models,
    make_forecaster,
    parse_models,
)

WINDOW = 200


@functools.cache
def _sp500(bars: int = 700) -> Series:
    """The first ``bars`` bundled S&P 500 closes as log prices."""
    from arch.data import sp500

    frame = sp500.load().iloc[:bars]
    values = np.log(frame["Adj Close"].to_numpy(dtype=np.float64))
    return Series("SP500", values, frame.index.to_numpy(dtype="datetime64[ns]"))


def _series(values: np.ndarray) -> Series:
    times = np.datetime64("2020-01-01", "ns") + np.arange(len(values)) * np.timedelta64(1, "D")
    return Series("X", np.asarray(values, dtype=np.float64), times)


# --- every model ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("horizon", [1, 5])
def test_forecast_when_fitted_then_finite_nested_intervals_of_the_horizon(
    name: str, horizon: int
) -> None:
    series = _sp500().upto(400)
    model = make_forecaster(name, window=WINDOW, max_horizon=5)
    model.fit(series.upto(380))

    forecast = model.forecast(series, horizon)

    assert isinstance(forecast, Forecast)
    assert forecast.horizon == horizon
    assert len(forecast.lower) == len(forecast.upper) == len(LEVELS)
    for array in (forecast.mean, forecast.sd, *forecast.lower, *forecast.upper):
        assert array.shape == (horizon,)
        assert np.isfinite(array).all()
    assert (forecast.sd > 0).all()
    lo80, lo95 = forecast.lower
    hi80, hi95 = forecast.upper
    assert (lo95 <= lo80).all()
    assert (lo80 <= forecast.mean).all()
    assert (forecast.mean <= hi80).all()
    assert (hi80 <= hi95).all()


@pytest.mark.parametrize("name", available_models())
def test_forecast_when_not_fitted_then_forecast_error(name: str) -> None:
    model = make_forecaster(name, window=WINDOW)

    with pytest.raises(ForecastError, match="not fitted"):
        model.forecast(_sp500().upto(400), 1)


# --- the random walks ------------------------------------------------------------------------


def test_naive_when_forecast_then_zero_mean_and_sd_growing_like_sqrt_h() -> None:
    series = _sp500().upto(500)
    model = make_forecaster(BASELINE, window=WINDOW)
    model.fit(series)

    forecast = model.forecast(series, 5)

    np.testing.assert_array_equal(forecast.mean, np.zeros(5))
    steps = np.arange(1, 6)
    np.testing.assert_allclose(forecast.sd / forecast.sd[0], np.sqrt(steps), rtol=1e-3)
    # One step: about the spread of the window's one-bar returns.
    returns = np.diff(series.values[-WINDOW:])
    assert forecast.sd[0] == pytest.approx(returns.std(), rel=0.05)


def test_drift_when_forecast_then_mean_is_h_times_the_average_return_of_the_window() -> None:
    series = _sp500().upto(600)
    model = make_forecaster("drift", window=WINDOW)
    model.fit(series)

    forecast = model.forecast(series, 5)

    average = np.mean(np.diff(series.values[-WINDOW:]))
    np.testing.assert_allclose(forecast.mean, average * np.arange(1, 6), rtol=1e-9, atol=1e-15)


# --- GARCH -----------------------------------------------------------------------------------


def test_garch_when_long_horizon_then_variance_tends_to_the_unconditional_one() -> None:
    series = _sp500()
    model = GarchForecaster(window=500)
    model.fit(series.upto(600))
    horizon = 5000

    mu, variance = model.variance(series, horizon)
    forecast = model.forecast(series, horizon)

    assert (variance > 0).all()
    _, omega, alpha, beta = model._params
    assert alpha + beta < 1
    unconditional = omega / (1 - alpha - beta) / 1e4  # percent² to log-return units
    assert variance[-1] == pytest.approx(unconditional, rel=1e-3)
    np.testing.assert_allclose(forecast.sd, np.sqrt(np.cumsum(variance)), rtol=1e-12)
    assert forecast.sd[-1] ** 2 / horizon == pytest.approx(unconditional, rel=0.02)
    assert forecast.mean[-1] == pytest.approx(mu * horizon, rel=1e-12)


# --- LightGBM --------------------------------------------------------------------------------


def test_lightgbm_when_numpy_features_then_same_forecast_as_mlforecast_predict() -> None:
    series = _sp500()
    window = 300
    model = LightGbmForecaster(window=window, max_horizon=5)
    model.fit(series.upto(420))

    for origin in (419, 450, 533, 699):
        seen = series.upto(origin + 1)
        returns = np.diff(seen.values[-window:])
        frame = pd.DataFrame({"unique_id": 0, "ds": np.arange(len(returns)), "y": returns})

        reference = model._fitted.predict(h=5, new_df=frame)["lgbm"].to_numpy()
        forecast = model.forecast(seen, 5)

        np.testing.assert_allclose(forecast.mean, np.cumsum(reference), rtol=1e-9, atol=1e-12)


def test_lightgbm_when_horizon_beyond_training_then_forecast_error() -> None:
    series = _sp500().upto(400)
    model = make_forecaster("lightgbm", window=WINDOW, max_horizon=3)
    model.fit(series)

    with pytest.raises(ForecastError, match="trained for 3 steps"):
        model.forecast(series, 4)


# --- bad data --------------------------------------------------------------------------------


def _constant() -> Series:
    return _series(np.full(300, math.log(100.0)))


def _nan_inside(position: int) -> Series:
    values = np.cumsum(np.random.default_rng(7).normal(0.0, 0.01, 300))
    values[position] = np.nan
    return _series(values)


def _fit_and_forecast(name: str, fit_on: Series, forecast_on: Series) -> Forecast | None:
    """The forecast, or None when the model declined with a ForecastError."""
    model = make_forecaster(name, window=WINDOW, max_horizon=5)
    try:
        model.fit(fit_on)
        return model.forecast(forecast_on, 5)
    except ForecastError:
        return None


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("data", ["constant", "nan_in_window", "nan_at_origin"], ids=lambda d: d)
def test_forecast_when_bad_data_then_forecast_error_or_finite(name: str, data: str) -> None:
    series = {
        "constant": _constant,
        "nan_in_window": lambda: _nan_inside(290),
        "nan_at_origin": lambda: _nan_inside(299),
    }[data]()

    # Any exception other than ForecastError fails the test.
    forecast = _fit_and_forecast(name, series, series)

    if forecast is not None:
        for array in (forecast.mean, forecast.sd, *forecast.lower, *forecast.upper):
            assert np.isfinite(array).all()


@pytest.mark.parametrize("name", available_models())
def test_forecast_when_nan_arrives_after_the_fit_then_forecast_error_or_finite(name: str) -> None:
    series = _nan_inside(299)
    clean = series.upto(250)
    assert np.isfinite(clean.values).all()

    forecast = _fit_and_forecast(name, clean, series)

    if forecast is not None:
        assert np.isfinite(forecast.mean).all()
        assert np.isfinite(forecast.sd).all()


# --- the registry ----------------------------------------------------------------------------


def test_parse_models_when_names_then_them_in_order() -> None:
    assert parse_models(" auto_ets, naive ,") == ("auto_ets", "naive")


@pytest.mark.parametrize("text", [None, ""])
def test_parse_models_when_empty_then_every_model(text: str | None) -> None:
    assert parse_models(text) == DEFAULT_MODELS == tuple(available_models())


def test_parse_models_when_unknown_then_error_names_it_and_the_choices() -> None:
    with pytest.raises(ForecastError, match="unknown model prophet, lstm") as caught:
        parse_models("naive,prophet,lstm")

    assert all(name in str(caught.value) for name in available_models())


def test_make_forecaster_when_unknown_then_forecast_error_naming_it() -> None:
    with pytest.raises(ForecastError, match="'prophet'"):
        make_forecaster("prophet")
