"""Forecast metrics against hand examples, closed forms and other libraries' paths."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

from ffe.forecast.base import LEVELS, Forecast
from ffe.forecast.metrics import (
    crps_normal,
    diebold_mariano,
    interval_coverage,
    interval_score,
    mase,
    naive_scale,
)

# --- MASE and the naive scale ---------------------------------------------------------


def test_mase_when_scalar_scale_then_mean_absolute_error_over_scale() -> None:
    # Absolute errors 1, 0, 2: MAE 1.
    assert mase([1.0, 2.0, 3.0], [2.0, 2.0, 5.0], 0.5) == pytest.approx(2.0)


def test_mase_when_scale_per_forecast_then_mean_of_scaled_errors() -> None:
    # Scaled errors 1/1, 0/2, 2/4.
    assert mase([1.0, 2.0, 3.0], [2.0, 2.0, 5.0], [1.0, 2.0, 4.0]) == pytest.approx(0.5)


def test_mase_when_scale_per_origin_then_spread_over_the_horizon() -> None:
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    forecast = np.array([[0.0, 0.0], [3.0, 6.0]])  # errors [1, 2] and [0, 2]

    # Row scales 1 and 2: scaled errors 1, 2, 0, 1.
    assert mase(actual, forecast, np.array([1.0, 2.0])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("actual", "forecast", "scale", "message"),
    [
        ([1.0, np.nan], [1.0, 2.0], 1.0, "actual holds NaN"),
        ([], [], 1.0, "actual is empty"),
        ([1.0, 2.0], [1.0, 2.0, 3.0], 1.0, r"forecast has shape \(3,\)"),
        ([1.0, 2.0], [1.0, 2.0], 0.0, "scale must be positive"),
        ([1.0, 2.0], [1.0, 2.0], [1.0, 1.0, 1.0], r"scale has shape \(3,\)"),
        ([1.0, 2.0], [1.0, 2.0], [1.0, np.inf], "scale holds NaN or infinite"),
    ],
)
def test_mase_when_bad_input_then_value_error_names_it(
    actual: list[float], forecast: list[float], scale: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mase(actual, forecast, scale)  # type: ignore[arg-type]


def test_naive_scale_when_hand_example_then_mean_abs_diff_over_the_window() -> None:
    values = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 12.0])  # diffs 1 2 3 4 5 -3

    scales = naive_scale(values, window=3, origins=np.array([2, 5, 6]))

    # Origin 2: diffs of values[0..2] = 1, 2. Origin 5: 4, 5. Origin 6: 5, |-3|.
    np.testing.assert_allclose(scales, [1.5, 4.5, 4.0])


def test_naive_scale_when_bars_after_origin_poisoned_then_scale_at_origin_unchanged() -> None:
    values = np.cumsum(np.random.default_rng(1).standard_normal(60))
    poisoned = values.copy()
    poisoned[31:] = 1e6

    clean = naive_scale(values, window=20, origins=np.arange(19, 31))

    np.testing.assert_array_equal(naive_scale(poisoned, 20, np.arange(19, 31)), clean)
    assert naive_scale(poisoned, 20, np.array([31]))[0] > 1e4  # the poison is visible after


def test_mase_of_naive_forecast_on_random_walk_when_scaled_by_naive_scale_then_near_one() -> None:
    values = np.cumsum(np.random.default_rng(2).standard_normal(20_001))
    origins = np.arange(250, 20_000)

    scale = naive_scale(values, window=251, origins=origins)

    # Out of sample, the one-step naive forecast is as good as in sample: MASE about 1.
    assert mase(values[origins + 1], values[origins], scale) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    ("values", "window", "origins", "message"),
    [
        ([0.0, 1.0, 2.0], 1, [2], "window must be at least 2"),
        ([0.0, 1.0, 2.0], 3, [1], r"origins must lie in \[2, 2\]"),
        ([0.0, 1.0, 2.0], 2, [3], r"origins must lie in \[1, 2\]"),
        ([0.0, 1.0, 2.0], 2, [1.0], "integer positions"),
        ([0.0, 1.0, 2.0], 2, [], "integer positions"),
        ([0.0, np.nan, 2.0], 2, [2], "values holds NaN"),
    ],
)
def test_naive_scale_when_bad_input_then_value_error(
    values: list[float], window: int, origins: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        naive_scale(values, window, origins)


# --- CRPS -----------------------------------------------------------------------------


def _crps_by_integration(y: float, mu: float, sigma: float) -> float:
    """CRPS from its definition: the integral of (F(x) - 1{x >= y})² over x."""
    below = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y)[0]
    above = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, np.inf)[0]
    return float(below + above)


def test_crps_normal_when_actual_at_mean_of_standard_normal_then_closed_form() -> None:
    # CRPS(N(0, 1), 0) = 2φ(0) - 1/√π = (√2 - 1)/√π.
    assert crps_normal([0.0], [0.0], [1.0])[0] == pytest.approx(
        (math.sqrt(2) - 1) / math.sqrt(math.pi)
    )


def test_crps_normal_when_compared_with_integral_definition_then_equal() -> None:
    actual, mean, sd = (
        np.array([0.3, -1.2, 2.5]),
        np.array([0.0, 0.5, 1.0]),
        np.array([1.0, 0.4, 2.0]),
    )

    expected = [_crps_by_integration(*args) for args in zip(actual, mean, sd, strict=True)]

    np.testing.assert_allclose(crps_normal(actual, mean, sd), expected, rtol=1e-6)


def test_crps_normal_when_sd_zero_then_absolute_error_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = crps_normal([1.0, -2.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 1e-300])

    np.testing.assert_allclose(scores, [1.0, 2.0, 0.0], atol=1e-12)
    # Continuity: a tiny sd scores almost like the point forecast.
    assert crps_normal([1.0], [0.0], [1e-9])[0] == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize(
    ("actual", "mean", "sd", "message"),
    [
        ([1.0], [0.0], [-1.0], "sd must be non-negative"),
        ([np.nan], [0.0], [1.0], "actual holds NaN"),
        ([1.0, 2.0], [0.0], [1.0, 1.0], r"mean has shape \(1,\)"),
        ([], [], [], "actual is empty"),
    ],
)
def test_crps_normal_when_bad_input_then_value_error(
    actual: list[float], mean: list[float], sd: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        crps_normal(actual, mean, sd)


# --- Intervals ------------------------------------------------------------------------


def test_interval_coverage_when_inside_on_bound_and_outside_then_bounds_count_as_inside() -> None:
    assert interval_coverage([0.5, 1.0, 1.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]) == pytest.approx(
        2 / 3
    )


@pytest.mark.parametrize("index", range(len(LEVELS)))
def test_interval_coverage_when_normal_forecast_intervals_on_normal_draws_then_nominal(
    index: int,
) -> None:
    actual = np.random.default_rng(3).standard_normal(40_000)
    forecast = Forecast.normal(np.zeros(40_000), np.ones(40_000))

    coverage = interval_coverage(actual, forecast.lower[index], forecast.upper[index])

    assert coverage == pytest.approx(LEVELS[index] / 100, abs=0.01)


def test_interval_score_when_inside_below_above_then_width_plus_scaled_miss() -> None:
    # 50% interval [0, 0.4]: alpha 0.5, so a miss costs 4 times its distance.
    scores = interval_score([0.1, -0.1, 0.5], [0.0] * 3, [0.4] * 3, level=50)

    np.testing.assert_allclose(scores, [0.4, 0.8, 0.8])


@pytest.mark.parametrize(
    ("lower", "upper", "level", "message"),
    [
        ([0.0], [1.0], 100, "strictly between 0 and 100"),
        ([0.0], [1.0], 0, "strictly between 0 and 100"),
        ([1.0], [0.0], 80, "lower exceeds upper"),
        ([0.0, 0.0], [1.0], 80, r"lower has shape \(2,\)"),
    ],
)
def test_interval_score_when_bad_input_then_value_error(
    lower: list[float], upper: list[float], level: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        interval_score([0.5], lower, upper, level)


def test_interval_coverage_when_lower_above_upper_then_value_error() -> None:
    with pytest.raises(ValueError, match="lower exceeds upper"):
        interval_coverage([0.5, 0.5], [0.0, 1.0], [1.0, 0.0])


# --- Diebold–Mariano ------------------------------------------------------------------

# d = [2, 0, 1, 3, -1, 1]: mean 1, centred [1, -1, 0, 2, -2, 0], n = 6,
# γ0 = 10/6 and γ1 = (-1 + 0 + 0 - 4 + 0)/6 = -5/6.
LOSS_A = np.array([3.0, 1.0, 2.0, 4.0, 0.0, 2.0])
LOSS_B = np.ones(6)


def test_diebold_mariano_when_horizon_one_hand_example_then_statistic_root_three() -> None:
    result = diebold_mariano(LOSS_A, LOSS_B, horizon=1)

    # DM = 1/√(γ0/6) = 6/√10; HLN factor √((6 + 1 - 2)/6) = √(5/6): DM* = √3.
    assert result.statistic == pytest.approx(math.sqrt(3))
    assert result.p_value == pytest.approx(2 * stats.t.sf(math.sqrt(3), 5))
    assert result.p_value_a_better == pytest.approx(stats.t.cdf(math.sqrt(3), 5))
    assert (result.mean_diff, result.n, result.kernel) == (1.0, 6, "rectangular")


def test_diebold_mariano_when_rectangular_variance_zero_then_bartlett_fallback() -> None:
    result = diebold_mariano(LOSS_A, LOSS_B, horizon=2)

    # Rectangular: γ0 + 2γ1 = 0, not positive. Bartlett: γ0 + 2·(1/2)·γ1 = 5/6, so
    # DM = 1/√(5/36) = 6/√5; HLN factor √((6 + 1 - 4 + 2/6)/6) = √20/6: DM* = 2.
    assert result.kernel == "bartlett"
    assert result.statistic == pytest.approx(2.0)
    assert result.p_value == pytest.approx(2 * stats.t.sf(2.0, 5))


def test_diebold_mariano_when_horizon_three_then_matches_loop_computation() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(30) ** 2, rng.standard_normal(30) ** 2
    d = [x - y for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    n, mean = len(d), sum(d) / len(d)
    gamma = [sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n for k in range(3)]
    variance = gamma[0] + 2 * (gamma[1] + gamma[2])
    expected = mean / math.sqrt(variance / n) * math.sqrt((n + 1 - 6 + 3 * 2 / n) / n)

    result = diebold_mariano(a, b, horizon=3)

    assert variance > 0
    assert result.kernel == "rectangular"
    assert result.statistic == pytest.approx(expected)


def test_diebold_mariano_when_horizon_one_then_same_as_scipy_one_sample_t_test() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(80) ** 2, (1.1 * rng.standard_normal(80)) ** 2

    result = diebold_mariano(a, b)
    two_sided = stats.ttest_1samp(a - b, 0.0)
    less = stats.ttest_1samp(a - b, 0.0, alternative="less")

    # With h = 1 the HLN factor √((n-1)/n) turns the 1/n variance into the sample variance.
    assert result.statistic == pytest.approx(two_sided.statistic)
    assert result.p_value == pytest.approx(two_sided.pvalue)
    assert result.p_value_a_better == pytest.approx(less.pvalue)


def test_diebold_mariano_when_identical_forecasts_then_zero_and_p_one_without_warnings() -> None:
    losses = np.random.default_rng(6).standard_normal(50) ** 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = diebold_mariano(losses, losses.copy(), horizon=3)

    assert (result.statistic, result.p_value, result.mean_diff) == (0.0, 1.0, 0.0)
    assert result.p_value_a_better == pytest.approx(0.5)


def test_diebold_mariano_when_a_always_lower_by_constant_then_infinite_and_p_zero() -> None:
    losses = np.random.default_rng(7).standard_normal(50) ** 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = diebold_mariano(losses, losses + 0.1)

    assert result.statistic == -math.inf
    assert (result.p_value, result.p_value_a_better) == (0.0, 0.0)


def _squared_errors(rng: np.random.Generator, n: int, horizon: int, sd: float) -> np.ndarray:
    """Squared h-step errors: sums of h shocks, so MA(h - 1) like real h-step forecasts."""
    shocks = sd * rng.standard_normal(n + horizon - 1)
    return np.asarray(np.convolve(shocks, np.ones(horizon), "valid") ** 2)


@pytest.mark.parametrize("horizon", [1, 3])
def test_diebold_mariano_when_equally_good_forecasts_then_rejects_about_five_percent(
    horizon: int,
) -> None:
    rejections = 0
    for seed in range(400):
        rng = np.random.default_rng([horizon, seed])
        a = _squared_errors(rng, 250, horizon, 1.0)
        b = _squared_errors(rng, 250, horizon, 1.0)
        rejections += diebold_mariano(a, b, horizon).p_value < 0.05

    assert 0.02 <= rejections / 400 <= 0.09


def test_diebold_mariano_when_a_clearly_better_then_rejects_in_favour_of_a() -> None:
    rng = np.random.default_rng(8)
    a = _squared_errors(rng, 200, 2, 0.6)
    b = _squared_errors(rng, 200, 2, 1.0)

    result = diebold_mariano(a, b, horizon=2)
    reverse = diebold_mariano(b, a, horizon=2)

    assert result.mean_diff < 0
    assert result.p_value < 0.01
    assert result.p_value_a_better < 0.01
    assert reverse.p_value_a_better > 0.99


@pytest.mark.parametrize(
    ("loss_a", "loss_b", "horizon", "message"),
    [
        ([1.0, np.nan, 2.0], [1.0, 1.0, 1.0], 1, "loss_a holds NaN"),
        ([], [], 1, "loss_a is empty"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], 1, r"loss_b has shape \(2,\)"),
        ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]], 1, "must be 1-D"),
        ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0, "horizon must be at least 1"),
        ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 3, "horizon 3 needs more than 3 losses, got 3"),
        ([1.0], [2.0], 1, "needs more than 1 losses, got 1"),
    ],
)
def test_diebold_mariano_when_bad_input_then_value_error(
    loss_a: list[float], loss_b: list[float], horizon: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        diebold_mariano(loss_a, loss_b, horizon)
