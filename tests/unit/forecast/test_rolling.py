"""Rolling-origin forecasts: no model sees past its origin, any split into processes gives the
same panel, and the realized outcomes line up with the origins."""

from __future__ import annotations

import numpy as np
import pytest

from ffe.domain.errors import ConfigError
from ffe.forecast.base import LEVELS, Series
from ffe.forecast.models import available_models
from ffe.forecast.rolling import RollingSpec, model_forecasts, realized, rolling_forecasts

HORIZON = 5


def _random_walk(n_bars: int, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    values = np.log(100.0) + np.cumsum(rng.normal(0.0003, 0.01, n_bars))
    times = np.datetime64("2020-01-01", "ns") + np.arange(n_bars) * np.timedelta64(1, "D")
    return Series("RW", values, times)


def _poisoned_after(series: Series, cut: int) -> Series:
    """The series with every bar after ``cut`` replaced by finite garbage."""
    values = series.values.copy()
    values[cut + 1 :] = values[cut + 1 :][::-1] * 1.7 - 3.0
    return Series(series.symbol, values, series.times)


# --- look-ahead ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", available_models())
# Refits at origins 149, 189, 229, 269, 309: a cut at a refit catches a fit that peeks, a cut
# between refits a forecast that peeks (some models' forecasts hardly move with one bar).
@pytest.mark.parametrize("cut", [269, 280], ids=["at_refit", "between_refits"])
def test_model_forecasts_when_bars_after_cut_poisoned_then_forecasts_up_to_cut_unchanged(
    name: str, cut: int
) -> None:
    series = _random_walk(330)
    spec = RollingSpec(horizon=HORIZON, window=150, refit_every=40)
    origins = spec.origins(len(series))
    upto_cut = origins <= cut

    clean = model_forecasts(name, series, spec)
    poisoned = model_forecasts(name, _poisoned_after(series, cut), spec)

    assert np.isfinite(clean[0][upto_cut]).all(), "the check needs forecasts to compare"
    for before, after in zip(clean, poisoned, strict=True):
        # lower/upper are (levels, origins, horizon): origins are the second-to-last axis.
        np.testing.assert_array_equal(
            before[..., upto_cut, :], after[..., upto_cut, :], strict=True
        )
    changed = [
        not np.array_equal(b[..., ~upto_cut, :], a[..., ~upto_cut, :], equal_nan=True)
        for b, a in zip(clean, poisoned, strict=True)
    ]
    assert any(changed), "the poison after the cut should show in later forecasts"


# --- the panel -------------------------------------------------------------------------------


def test_rolling_forecasts_when_two_workers_then_same_panel_as_one() -> None:
    series = _random_walk(420, seed=3)
    models = ("naive", "auto_ets", "lightgbm", "garch")
    # Blocks of 8 refits = 80 origins: 4 blocks per model, so the split is really exercised.
    spec = RollingSpec(horizon=HORIZON, window=150, refit_every=10)
    reported: list[int] = []

    one = rolling_forecasts(series, models, spec, workers=1)
    two = rolling_forecasts(series, models, spec, workers=2, progress=reported.append)

    for field in ("mean", "sd", "lower", "upper", "actual", "origins"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field), strict=True)
    assert one.models == two.models == models
    assert sum(reported) == len(models) * len(one.origins)
    assert len(reported) == len(models) * 4  # one report per finished block


def test_rolling_forecasts_when_run_then_panel_shapes_follow_models_origins_horizon() -> None:
    series = _random_walk(300)
    models = ("naive", "drift")
    spec = RollingSpec(horizon=3, window=120, refit_every=50)
    reported: list[int] = []

    panel = rolling_forecasts(series, models, spec, workers=1, progress=reported.append)

    n = len(series) - spec.window + 1
    np.testing.assert_array_equal(panel.origins, np.arange(spec.window - 1, len(series)))
    assert panel.mean.shape == panel.sd.shape == (2, n, 3)
    assert panel.lower.shape == panel.upper.shape == (2, len(LEVELS), n, 3)
    assert panel.actual.shape == (n, 3)
    assert panel.horizon == 3
    assert panel.index("drift") == 1
    np.testing.assert_array_equal(panel.times, series.times[panel.origins])
    assert sum(reported) == len(models) * n
    assert np.isfinite(panel.mean).all()


def test_rolling_forecasts_when_start_given_then_first_origin_is_start() -> None:
    series = _random_walk(300)
    spec = RollingSpec(horizon=1, window=120, refit_every=50, start=250)

    panel = rolling_forecasts(series, ["naive"], spec)

    assert panel.origins[0] == 250
    assert panel.origins[-1] == len(series) - 1


def test_rolling_forecasts_when_actual_then_value_h_bars_later_minus_origin_nan_past_end() -> None:
    series = _random_walk(200)
    spec = RollingSpec(horizon=4, window=150, refit_every=50)

    panel = rolling_forecasts(series, ["naive"], spec)

    values = series.values
    for i, origin in enumerate(panel.origins):
        for h in range(1, 5):
            if origin + h < len(values):
                assert panel.actual[i, h - 1] == values[origin + h] - values[origin]
            else:
                assert np.isnan(panel.actual[i, h - 1])
    assert np.isnan(panel.actual[-1]).all()
    assert np.isfinite(panel.actual[-5]).all()


def test_realized_when_origins_near_the_end_then_nan_only_past_the_data() -> None:
    values = np.array([0.0, 1.0, 3.0, 6.0])

    out = realized(values, np.array([1, 2, 3]), horizon=2)

    expected = np.array([[2.0, 5.0], [3.0, np.nan], [np.nan, np.nan]])
    np.testing.assert_array_equal(out, expected)


def test_rolling_forecasts_when_too_few_bars_then_config_error_naming_window() -> None:
    series = _random_walk(100)
    spec = RollingSpec(horizon=1, window=150, refit_every=10)

    with pytest.raises(ConfigError, match="RW: 100 bars are not enough for a 150-bar window"):
        rolling_forecasts(series, ["naive"], spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 0}, "horizon must be at least 1"),
        ({"window": 29}, "window must be at least 30"),
        ({"refit_every": 0}, "refit_every must be at least 1"),
    ],
)
def test_rolling_spec_when_bad_value_then_config_error_naming_it(
    kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        RollingSpec(**kwargs)
