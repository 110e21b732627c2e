"""The benchmark table on a synthetic random walk with a known drift: the random walk scores
as its own scale says, the drift model beats it, and the combinations are all there."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest

from ffe.domain.errors import ConfigError
from ffe.forecast.base import Series
from ffe.forecast.ensemble import combine, hedge_weights, leader_weights, panel_crps
from ffe.forecast.evaluate import BEST, ENSEMBLE, EQUAL, LEADER, BenchResult, Score, evaluate
from ffe.forecast.metrics import crps_normal, diebold_mariano
from ffe.forecast.models import BASELINE
from ffe.forecast.rolling import Panel, RollingSpec, rolling_forecasts

WINDOW, REFIT = 200, 50
DRIFT, VOLATILITY = 0.003, 0.01  # per bar: a drift the window's average can find


@functools.cache
def _series(n_bars: int = 1700) -> Series:
    rng = np.random.default_rng(2024)
    values = np.log(50.0) + np.cumsum(rng.normal(DRIFT, VOLATILITY, n_bars))
    times = np.datetime64("2010-01-04", "ns") + np.arange(n_bars) * np.timedelta64(1, "D")
    return Series("DRIFTY", values, times)


@functools.cache
def _panel() -> Panel:
    spec = RollingSpec(horizon=5, window=WINDOW, refit_every=REFIT)
    return rolling_forecasts(_series(), (BASELINE, "drift"), spec)


@functools.cache
def _result() -> BenchResult:
    return evaluate(_panel(), _series().values, [1, 5], WINDOW, REFIT)


def _row(model: str, horizon: int) -> Score:
    return next(s for s in _result().scores if s.model == model and s.horizon == horizon)


def test_evaluate_when_run_then_a_row_per_model_and_combination_at_each_horizon() -> None:
    result = _result()

    rows = [(s.horizon, s.model) for s in result.scores]
    names = (BASELINE, "drift", ENSEMBLE, EQUAL, LEADER, BEST)
    expected = [(h, m) for h in (1, 5) for m in names]
    assert rows == expected
    assert result.symbol == "DRIFTY"
    assert result.first_origin == str(_series().times[WINDOW - 1])[:10]
    assert result.last_origin == str(_series().times[-1])[:10]


@pytest.mark.parametrize("horizon", [1, 5])
def test_evaluate_when_every_model_forecast_then_sample_is_origins_with_outcomes(
    horizon: int,
) -> None:
    n_origins = len(_panel().origins)

    assert {s.n for s in _result().scores if s.horizon == horizon} == {n_origins - horizon}


def test_evaluate_when_random_walk_then_no_dm_row_but_every_other_row_has_one() -> None:
    for score in _result().scores:
        if score.model == BASELINE:
            assert score.dm_statistic is None
            assert score.dm_p_value is None
            assert not score.beats_random_walk
        else:
            assert score.dm_p_value is not None
            assert 0.0 <= score.dm_p_value <= 1.0


def test_evaluate_when_random_walk_one_step_then_mase_close_to_one() -> None:
    # The scale is the naive one-step MAE over the window: out of sample, about the same.
    assert _row(BASELINE, 1).mase == pytest.approx(1.0, abs=0.08)


def test_evaluate_when_mase_then_mean_error_over_the_window_naive_scale() -> None:
    panel, values = _panel(), _series().values
    h = 5
    y = panel.actual[:-h, h - 1]
    mean = panel.mean[panel.index("drift"), :-h, h - 1]
    # Independent: the scale at each origin from a plain loop over its window.
    scale = np.array(
        [np.abs(np.diff(values[t - WINDOW + 1 : t + 1])).mean() for t in panel.origins]
    )

    expected = np.mean(np.abs(y - mean) / scale[:-h])

    assert _row("drift", h).mase == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("horizon", [1, 5])
def test_evaluate_when_series_drifts_then_drift_model_beats_the_random_walk(horizon: int) -> None:
    drift, naive = _row("drift", horizon), _row(BASELINE, horizon)

    assert drift.crps < naive.crps
    assert drift.mase < naive.mase
    assert drift.dm_statistic is not None
    assert drift.dm_statistic < 0
    assert drift.beats_random_walk


def test_evaluate_when_model_well_specified_then_intervals_cover_about_their_level() -> None:
    drift = _row("drift", 1)

    assert drift.coverage_80 == pytest.approx(0.80, abs=0.03)
    assert drift.coverage_95 == pytest.approx(0.95, abs=0.02)


@pytest.mark.parametrize("horizon", [1, 5])
def test_evaluate_when_best_in_hindsight_then_it_is_the_model_with_lowest_crps(
    horizon: int,
) -> None:
    models = [s for s in _result().scores if s.horizon == horizon and s.model in _panel().models]
    lowest = min(models, key=lambda s: s.crps)

    best = _row(BEST, horizon)

    assert best.note == f"{lowest.model}, hindsight"
    assert best.crps == pytest.approx(lowest.crps, rel=1e-12)
    assert best.mase == pytest.approx(lowest.mase, rel=1e-12)


def test_evaluate_when_crps_then_mean_normal_crps_over_the_sample() -> None:
    panel = _panel()
    k = panel.index(BASELINE)
    y = panel.actual[:-1, 0]

    expected = crps_normal(y, panel.mean[k, :-1, 0], panel.sd[k, :-1, 0]).mean()

    assert _row(BASELINE, 1).crps == pytest.approx(expected, rel=1e-12)


def test_evaluate_when_equal_weights_of_two_then_mixture_sits_between_models() -> None:
    for h in (1, 5):
        crps = [_row(name, h).crps for name in (BASELINE, "drift")]
        # CRPS is convex in the predictive distribution: a mixture scores no worse than the
        # average of its components.
        assert _row(EQUAL, h).crps <= np.mean(crps) + 1e-12


def test_evaluate_when_ensemble_learns_then_final_weight_favours_drift() -> None:
    result = _result()

    for h, weights in result.weights.items():
        assert weights.shape == (len(_panel().origins), 2)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
        assert weights[-1, _panel().index("drift")] > 0.5, h
    assert _row(ENSEMBLE, 1).crps < _row(BASELINE, 1).crps


def test_to_dict_when_serialized_then_json_with_scores_and_final_weights() -> None:
    data = json.loads(json.dumps(_result().to_dict()))

    assert len(data["scores"]) == len(_result().scores)
    assert set(data["final_weights"]) == {"1", "5"}
    for weights in data["final_weights"].values():
        assert set(weights) == {BASELINE, "drift"}
        assert sum(weights.values()) == pytest.approx(1.0)
    assert data["window"] == WINDOW
    assert data["refit_every"] == REFIT


# --- errors ----------------------------------------------------------------------------------


def test_evaluate_when_random_walk_missing_then_config_error_naming_it() -> None:
    panel = dataclasses.replace(_panel(), models=("rw", "drift"))

    with pytest.raises(ConfigError, match="needs the random walk \\('naive'\\)"):
        evaluate(panel, _series().values, [1], WINDOW, REFIT)


@pytest.mark.parametrize("horizons", [[0], [6], [1, 7]])
def test_evaluate_when_horizon_outside_panel_then_config_error(horizons: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"outside 1\.\.5 of the forecasts"):
        evaluate(_panel(), _series().values, horizons, WINDOW, REFIT)


def test_evaluate_when_too_few_outcomes_then_config_error() -> None:
    panel = _panel()
    mean = panel.mean.copy()
    mean[1, 2:] = np.nan  # drift forecasts only at the first two origins
    sparse = dataclasses.replace(panel, mean=mean)

    with pytest.raises(ConfigError, match="too few origins with outcomes for horizon 1: 2"):
        evaluate(sparse, _series().values, [1], WINDOW, REFIT)


def test_leader_weights_when_outcomes_arrive_then_all_on_the_best_so_far() -> None:
    panel = _panel()
    h = 5
    crps = panel_crps(panel, h)

    weights = leader_weights(panel, h)

    for i in range(len(panel.origins)):
        known = crps[:, : max(i - h + 1, 0)]
        if known.shape[1] == 0:  # nothing known yet: equal weights
            assert weights[i].tolist() == [0.5, 0.5]
            continue
        leader = int(np.argmin(np.nanmean(known, axis=1)))
        assert weights[i].tolist() == [float(k == leader) for k in range(2)]


@pytest.mark.parametrize("horizon", [1, 5])
def test_evaluate_when_compared_with_the_ensemble_then_dm_of_crps_and_squared_error(
    horizon: int,
) -> None:
    panel = _panel()
    step = horizon - 1
    sample = np.isfinite(panel.actual[:, step])
    y = panel.actual[sample, step]
    weights = hedge_weights(panel, horizon)
    mix_mean, mix_sd = combine(panel.mean[:, :, step, None], panel.sd[:, :, step, None], weights)
    ens_mean, ens_sd = mix_mean[sample, 0], mix_sd[sample, 0]
    k = panel.index("drift")
    mean, sd = panel.mean[k, sample, step], panel.sd[k, sample, step]

    drift = _row("drift", horizon)
    by_crps = diebold_mariano(crps_normal(y, mean, sd), crps_normal(y, ens_mean, ens_sd), horizon)
    by_se = diebold_mariano((y - mean) ** 2, (y - ens_mean) ** 2, horizon)

    assert drift.dm_crps_vs_ensemble == pytest.approx(by_crps.statistic, rel=1e-12)
    assert drift.dm_crps_vs_ensemble_p == pytest.approx(by_crps.p_value, rel=1e-12)
    assert drift.dm_se_vs_ensemble == pytest.approx(by_se.statistic, rel=1e-12)
    assert drift.dm_se_vs_ensemble_p == pytest.approx(by_se.p_value, rel=1e-12)
    assert _row(ENSEMBLE, horizon).dm_crps_vs_ensemble is None
    assert _row(LEADER, horizon).dm_crps_vs_ensemble_p is not None
