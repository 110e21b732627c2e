"""Hedge weights and the mixture forecast: lower losses win weight, weights never use an
outcome not yet known, and the combination is the mixture's mean and spread."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ffe.domain.errors import ConfigError
from ffe.forecast.base import LEVELS
from ffe.forecast.ensemble import (
    Hedge,
    HedgeConfig,
    combine,
    equal_weights,
    hedge_weights,
    panel_crps,
)
from ffe.forecast.metrics import crps_normal
from ffe.forecast.rolling import Panel


def _panel(mean: np.ndarray, sd: np.ndarray, actual: np.ndarray) -> Panel:
    """A panel of (models, origins, horizon) forecasts over consecutive origins."""
    n_models, n_origins, horizon = mean.shape
    origins = np.arange(100, 100 + n_origins, dtype=np.int64)
    intervals = np.broadcast_to(mean[:, None], (n_models, len(LEVELS), n_origins, horizon))
    return Panel(
        symbol="X",
        models=tuple(f"m{k}" for k in range(n_models)),
        origins=origins,
        times=np.datetime64("2020-01-01", "ns") + origins * np.timedelta64(1, "D"),
        mean=mean,
        sd=sd,
        lower=intervals.copy(),
        upper=intervals.copy(),
        actual=actual,
    )


def _three_models(n_origins: int = 120, horizon: int = 2, seed: int = 0) -> Panel:
    """Model 0 forecasts the outcome well, model 1 worse, model 2 badly."""
    rng = np.random.default_rng(seed)
    actual = rng.normal(0.0, 0.01, (n_origins, horizon))
    noise = rng.normal(0.0, 1.0, (3, n_origins, horizon))
    errors = np.array([0.001, 0.01, 0.03])[:, None, None] * noise
    mean = actual[None] + errors
    sd = np.full(mean.shape, 0.01)
    return _panel(mean, sd, actual)


# --- Hedge -----------------------------------------------------------------------------------


def test_hedge_when_one_model_has_lower_losses_then_it_gets_the_highest_weight() -> None:
    hedge = Hedge(3)

    for _ in range(50):
        hedge.observe(np.array([0.8, 1.0, 1.3]))
    weights = hedge.weights()

    assert int(np.argmax(weights)) == 0
    assert weights[0] > weights[1] > weights[2] > 0
    assert weights.sum() == pytest.approx(1.0)
    assert hedge.observed == 50


def test_hedge_when_losses_observed_then_weights_are_softmax_of_discounted_relative_loss() -> None:
    config = HedgeConfig(eta=1.5, discount=0.9)
    hedge = Hedge(2, config)
    losses = [np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([4.0, 1.0])]

    for crps in losses:
        hedge.observe(crps)

    # Independent: S = sum over outcomes of discount^age * loss / mean loss at that outcome.
    score = sum(0.9 ** (len(losses) - 1 - age) * c / c.mean() for age, c in enumerate(losses))
    expected = np.exp(-1.5 * score) / np.exp(-1.5 * score).sum()
    np.testing.assert_allclose(hedge.scores, score)
    np.testing.assert_allclose(hedge.weights(), expected)


def test_hedge_when_model_unavailable_then_zero_weight_and_others_renormalized() -> None:
    hedge = Hedge(3)
    for _ in range(10):
        hedge.observe(np.array([0.5, 1.0, 1.5]))
    full = hedge.weights()

    weights = hedge.weights(np.array([False, True, True]))

    assert weights[0] == 0.0
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights[1:], full[1:] / full[1:].sum())


def test_hedge_when_no_model_available_then_all_weights_zero() -> None:
    weights = Hedge(2).weights(np.array([False, False]))

    np.testing.assert_array_equal(weights, [0.0, 0.0])


def test_hedge_when_all_losses_unknown_then_nothing_observed() -> None:
    hedge = Hedge(2)

    hedge.observe(np.array([np.nan, np.nan]))

    assert hedge.observed == 0
    np.testing.assert_array_equal(hedge.weights(), [0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": -1.0}, "eta must be >= 0"),
        ({"eta": float("nan")}, "eta must be >= 0"),
        ({"discount": 0.0}, r"discount must be in \(0, 1\]"),
        ({"discount": 1.5}, r"discount must be in \(0, 1\]"),
    ],
)
def test_hedge_config_when_out_of_range_then_config_error(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        HedgeConfig(**kwargs)


# --- weights over a panel --------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2])
def test_hedge_weights_when_best_model_is_clear_then_it_ends_with_most_weight(step: int) -> None:
    panel = _three_models()

    weights = hedge_weights(panel, step)

    assert weights.shape == (len(panel.origins), 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # Nothing is known before the first outcome: equal weights.
    np.testing.assert_allclose(weights[:step], 1 / 3)
    assert int(np.argmax(weights[-1])) == 0
    assert weights[-1, 0] > 0.9


@pytest.mark.parametrize("step", [1, 2])
def test_hedge_weights_when_later_outcomes_change_then_weights_up_to_origin_unchanged(
    step: int,
) -> None:
    panel = _three_models()
    i = 60
    changed = panel.actual.copy()
    # Outcomes of origins after i - step are not known at origin i: make them favour model 2.
    changed[i - step + 1 :] = panel.mean[2, i - step + 1 :]
    altered = dataclasses.replace(panel, actual=changed)

    before = hedge_weights(panel, step)
    after = hedge_weights(altered, step)

    np.testing.assert_array_equal(before[: i + 1], after[: i + 1])
    assert not np.allclose(before[i + 1 :], after[i + 1 :])  # the change does show later


def test_hedge_weights_when_model_missing_at_origin_then_zero_there_and_rest_sum_to_one() -> None:
    panel = _three_models()
    mean = panel.mean.copy()
    mean[0, 40:50, :] = np.nan
    gapped = dataclasses.replace(panel, mean=mean)

    weights = hedge_weights(gapped, 1)

    np.testing.assert_array_equal(weights[40:50, 0], 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert (weights[50:, 0] > 0).all()


def test_equal_weights_when_one_model_missing_then_the_others_share_equally() -> None:
    panel = _three_models(n_origins=4)
    mean = panel.mean.copy()
    mean[1, 2, 0] = np.nan
    mean[:, 3, 0] = np.nan

    weights = equal_weights(dataclasses.replace(panel, mean=mean), 1)

    np.testing.assert_allclose(weights[:2], 1 / 3)
    np.testing.assert_allclose(weights[2], [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(weights[3], 0.0)


def test_panel_crps_when_outcome_or_forecast_missing_then_nan_else_normal_crps() -> None:
    panel = _three_models(n_origins=5, horizon=1)
    actual = panel.actual.copy()
    actual[4, 0] = np.nan
    mean = panel.mean.copy()
    mean[1, 0, 0] = np.nan

    crps = panel_crps(dataclasses.replace(panel, actual=actual, mean=mean), 1)

    assert crps.shape == (3, 5)
    assert np.isnan(crps[:, 4]).all()
    assert np.isnan(crps[1, 0])
    expected = crps_normal(panel.actual[:4, 0], panel.mean[2, :4, 0], panel.sd[2, :4, 0])
    np.testing.assert_allclose(crps[2, :4], expected)


# --- the mixture -----------------------------------------------------------------------------


def test_combine_when_two_normals_then_law_of_total_variance() -> None:
    mean = np.array([[0.0], [1.0]])  # (models, origins)
    sd = np.array([[1.0], [2.0]])
    weights = np.array([[0.25, 0.75]])  # (origins, models)

    mix_mean, mix_sd = combine(mean, sd, weights)

    # E[Var] + Var[E]: 0.25 * 1 + 0.75 * 4, plus 0.25 * 0.75 * (1 - 0) ** 2.
    assert mix_mean[0] == pytest.approx(0.75)
    assert mix_sd[0] == pytest.approx(np.sqrt(3.25 + 0.1875))


def test_combine_when_sampled_then_matches_monte_carlo_of_the_mixture() -> None:
    rng = np.random.default_rng(42)
    mean = np.array([[-0.02], [0.01], [0.03]])
    sd = np.array([[0.01], [0.02], [0.005]])
    weights = np.array([[0.2, 0.5, 0.3]])
    component = rng.choice(3, size=400_000, p=weights[0])
    draws = rng.normal(mean[component, 0], sd[component, 0])

    mix_mean, mix_sd = combine(mean, sd, weights)

    assert mix_mean[0] == pytest.approx(draws.mean(), abs=1e-4)
    assert mix_sd[0] == pytest.approx(draws.std(), rel=5e-3)


def test_combine_when_unavailable_model_has_nan_and_zero_weight_then_ignored() -> None:
    mean = np.array([[np.nan, 0.01], [0.02, 0.03]])  # (models, origins)
    sd = np.array([[np.nan, 0.01], [0.01, 0.02]])
    weights = np.array([[0.0, 1.0], [0.5, 0.5]])

    mix_mean, mix_sd = combine(mean, sd, weights)

    assert mix_mean[0] == pytest.approx(0.02)
    assert mix_sd[0] == pytest.approx(0.01)
    assert np.isfinite(mix_mean).all()
    assert np.isfinite(mix_sd).all()


def test_combine_when_no_model_available_then_nan() -> None:
    mean = np.array([[np.nan, 0.01], [np.nan, 0.03]])
    sd = np.array([[np.nan, 0.01], [np.nan, 0.02]])
    weights = np.array([[0.0, 0.0], [0.5, 0.5]])

    mix_mean, mix_sd = combine(mean, sd, weights)

    assert np.isnan(mix_mean[0])
    assert np.isnan(mix_sd[0])
    assert mix_mean[1] == pytest.approx(0.02)


def test_combine_when_horizon_axis_then_each_step_mixed_separately() -> None:
    panel = _three_models(n_origins=6, horizon=3)
    weights = hedge_weights(panel, 1)

    mix_mean, mix_sd = combine(panel.mean, panel.sd, weights)

    assert mix_mean.shape == mix_sd.shape == (6, 3)
    for step in range(3):
        one_mean, one_sd = combine(panel.mean[:, :, step], panel.sd[:, :, step], weights)
        np.testing.assert_allclose(mix_mean[:, step], one_mean)
        np.testing.assert_allclose(mix_sd[:, step], one_sd)


def test_hedge_state_when_restored_then_same_weights_and_later_updates():
    hedge, copy = Hedge(3), Hedge(3)
    for crps in ([0.1, 0.2, np.nan], [0.3, 0.1, 0.2]):
        hedge.observe(np.array(crps))
    copy.restore(json.loads(json.dumps(hedge.state())))
    assert np.array_equal(copy.weights(), hedge.weights())
    assert copy.observed == 2
    for h in (hedge, copy):
        h.observe(np.array([0.5, 0.1, 0.1]))
    assert np.array_equal(copy.weights(), hedge.weights())


def test_hedge_state_when_for_another_number_of_models_then_refused():
    with pytest.raises(ConfigError, match="for 2 models, this ensemble has 3"):
        Hedge(3).restore(Hedge(2).state())
