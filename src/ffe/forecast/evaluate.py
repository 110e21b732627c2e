"""The forecast benchmark: every model and three ways of combining them, judged on the same
rolling origins against the random walk.

For each horizon ``h`` the sample is the origins where every model forecast and the outcome
``h`` bars later is in the data. On it, per model:

- MASE: mean absolute error of the ``h``-step cumulative log return, scaled at each origin by
  the mean absolute one-bar change over the model's training window (known at the origin);
- CRPS of the normal forecast (mean CRPS, in log-return units);
- coverage of the 80 % and 95 % intervals;
- a Diebold–Mariano test of squared error against the random walk (``naive``): the
  statistic (negative = smaller errors than the random walk) and its two-sided p-value.

The combinations: ``ensemble`` (Hedge weights from realized CRPS, known-at-the-time only),
and its baselines: ``equal`` (the plain average of the available models), ``best_so_far``
(follow the leader: at each origin, the model with the lowest CRPS over the outcomes known by
then, a real-time rule) and ``best_in_hindsight`` (the model with the lowest CRPS over the
whole sample: chosen knowing the future, which no real-time method is given). Every row but
the ensemble's also carries Diebold–Mariano tests against the ensemble, of CRPS and of
squared error (negative: smaller losses than the ensemble's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from ffe.domain.errors import ConfigError
from ffe.forecast.base import LEVELS
from ffe.forecast.ensemble import (
    HedgeConfig,
    combine,
    equal_weights,
    hedge_weights,
    leader_weights,
    panel_crps,
)
from ffe.forecast.metrics import crps_normal, diebold_mariano, interval_coverage, naive_scale
from ffe.forecast.models import BASELINE
from ffe.forecast.rolling import Panel

FloatArray = npt.NDArray[np.float64]
ENSEMBLE, EQUAL, LEADER, BEST = "ensemble", "equal", "best_so_far", "best_in_hindsight"


@dataclass(frozen=True, slots=True)
class Score:
    """One row of the benchmark table."""

    horizon: int
    model: str
    n: int
    mase: float
    crps: float
    coverage_80: float
    coverage_95: float
    dm_statistic: float | None
    dm_p_value: float | None
    note: str = ""
    # Against the ensemble (Hedge): DM of CRPS and of squared error; None on its own row.
    dm_crps_vs_ensemble: float | None = None
    dm_crps_vs_ensemble_p: float | None = None
    dm_se_vs_ensemble: float | None = None
    dm_se_vs_ensemble_p: float | None = None

    @property
    def beats_random_walk(self) -> bool:
        """Smaller squared errors than the random walk at the 5 % level."""
        return (
            self.dm_statistic is not None
            and self.dm_p_value is not None
            and self.dm_statistic < 0
            and self.dm_p_value < 0.05
        )


@dataclass(frozen=True, slots=True)
class BenchResult:
    symbol: str
    first_origin: str
    last_origin: str
    window: int
    refit_every: int
    scores: tuple[Score, ...]
    weights: dict[int, FloatArray] = field(repr=False)  # horizon -> (origins, models)
    models: tuple[str, ...] = ()
    times: npt.NDArray[np.datetime64] = field(default_factory=lambda: np.array([]), repr=False)

    def to_dict(self) -> dict[str, Any]:
        final = {
            str(h): dict(zip(self.models, map(float, w[-1]), strict=True))
            for h, w in self.weights.items()
        }
        return {
            "symbol": self.symbol,
            "first_origin": self.first_origin,
            "last_origin": self.last_origin,
            "window": self.window,
            "refit_every": self.refit_every,
            "scores": [asdict(score) for score in self.scores],
            "final_weights": final,
        }


def evaluate(
    panel: Panel,
    values: FloatArray,
    horizons: list[int],
    window: int,
    refit_every: int,
    hedge: HedgeConfig | None = None,
) -> BenchResult:
    """Score every model and combination of ``panel`` at each horizon (see module doc)."""
    if BASELINE not in panel.models:
        raise ConfigError(f"the benchmark needs the random walk ({BASELINE!r}) among the models")
    bad = [h for h in horizons if not 1 <= h <= panel.horizon]
    if bad:
        raise ConfigError(f"horizons {bad} outside 1..{panel.horizon} of the forecasts")
    scale = naive_scale(values, window, panel.origins)
    scores: list[Score] = []
    weights: dict[int, FloatArray] = {}
    for h in horizons:
        hedged = hedge_weights(panel, h, hedge)
        weights[h] = hedged
        scores.extend(_horizon_scores(panel, h, scale, hedged))
    times = panel.times
    return BenchResult(
        symbol=panel.symbol,
        first_origin=str(times[0])[:10],
        last_origin=str(times[-1])[:10],
        window=window,
        refit_every=refit_every,
        scores=tuple(scores),
        weights=weights,
        models=panel.models,
        times=times,
    )


def _horizon_scores(panel: Panel, h: int, scale: FloatArray, hedged: FloatArray) -> list[Score]:
    step = h - 1
    actual = panel.actual[:, step]
    means, sds = panel.mean[:, :, step], panel.sd[:, :, step]
    sample = np.isfinite(actual) & np.isfinite(means).all(axis=0) & np.isfinite(sds).all(axis=0)
    if sample.sum() <= h + 1:
        raise ConfigError(f"too few origins with outcomes for horizon {h}: {int(sample.sum())}")
    y, s = actual[sample], scale[sample]
    rw_error = (y - means[panel.index(BASELINE), sample]) ** 2
    rows: list[Score] = []

    def score(name: str, mean: FloatArray, sd: FloatArray, note: str = "") -> Score:
        error = (y - mean) ** 2
        baseline = name == BASELINE
        test = None if baseline else diebold_mariano(error, rw_error, horizon=h)
        lower = [mean - z * sd for z in _Z]
        upper = [mean + z * sd for z in _Z]
        return Score(
            horizon=h,
            model=name,
            n=len(y),
            mase=float(np.mean(np.abs(y - mean) / s)),
            crps=float(np.mean(crps_normal(y, mean, sd))),
            coverage_80=interval_coverage(y, lower[0], upper[0]),
            coverage_95=interval_coverage(y, lower[1], upper[1]),
            dm_statistic=None if test is None else _finite_or_none(test.statistic),
            dm_p_value=None if test is None else float(test.p_value),
            note=note,
        )

    forecasts: dict[str, tuple[FloatArray, FloatArray]] = {}
    for k, name in enumerate(panel.models):
        # Each model's own intervals for coverage (statsforecast's are not always normal).
        forecasts[name] = (means[k, sample], sds[k, sample])
        row = score(name, *forecasts[name])
        lo80, hi80 = panel.lower[k, 0, sample, step], panel.upper[k, 0, sample, step]
        lo95, hi95 = panel.lower[k, 1, sample, step], panel.upper[k, 1, sample, step]
        rows.append(
            _replace(
                row,
                coverage_80=interval_coverage(y, lo80, hi80),
                coverage_95=interval_coverage(y, lo95, hi95),
            )
        )
    combined = (
        (ENSEMBLE, hedged),
        (EQUAL, equal_weights(panel, h)),
        (LEADER, leader_weights(panel, h)),
    )
    for name, w in combined:
        mix_mean, mix_sd = combine(means[:, :, None], sds[:, :, None], w)
        forecasts[name] = (mix_mean[sample, 0], mix_sd[sample, 0])
        rows.append(score(name, *forecasts[name]))
    crps = panel_crps(panel, h)[:, sample].mean(axis=1)
    best = int(np.argmin(crps))
    forecasts[BEST] = forecasts[panel.models[best]]
    rows.append(score(BEST, *forecasts[BEST], note=f"{panel.models[best]}, hindsight"))
    ens_mean, ens_sd = forecasts[ENSEMBLE]
    ensemble = (crps_normal(y, ens_mean, ens_sd), (y - ens_mean) ** 2)  # once, for every row
    return [_against_ensemble(row, y, h, forecasts, ensemble) for row in rows]


def _against_ensemble(
    row: Score,
    y: FloatArray,
    h: int,
    forecasts: dict[str, tuple[FloatArray, FloatArray]],
    ensemble: tuple[FloatArray, FloatArray],
) -> Score:
    """``row`` with its Diebold–Mariano tests against the ensemble's CRPS and squared error
    (``ensemble``) over the same sample (the ensemble's own row is left as it is)."""
    if row.model == ENSEMBLE:
        return row
    mean, sd = forecasts[row.model]
    by_crps = diebold_mariano(crps_normal(y, mean, sd), ensemble[0], horizon=h)
    by_se = diebold_mariano((y - mean) ** 2, ensemble[1], horizon=h)
    return _replace(
        row,
        dm_crps_vs_ensemble=_finite_or_none(by_crps.statistic),
        dm_crps_vs_ensemble_p=_finite_or_none(by_crps.p_value),
        dm_se_vs_ensemble=_finite_or_none(by_se.statistic),
        dm_se_vs_ensemble_p=_finite_or_none(by_se.p_value),
    )


_Z = tuple(float(norm.ppf(0.5 + level / 200)) for level in LEVELS)  # 80 %, 95 %


def _replace(score: Score, **changes: Any) -> Score:
    values = asdict(score)
    values.update(changes)
    return Score(**values)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
