"""Combining models: Hedge-style weights learned from each model's realized loss.

Each model's weight is ``exp(-eta * S)``, renormalized, where ``S`` is its discounted sum of
relative losses: the CRPS of its forecast divided by the mean CRPS of all models at that
origin (so losses are near 1 whatever the market's volatility, and ``eta`` needs no
rescaling). A forecast's loss joins the sum only once its outcome is known: the ``h``-step
forecast made at origin ``t`` is judged at bar ``t + h``. Weights at origin ``t`` therefore use
only outcomes known by ``t``. A model with no forecast at an origin is left out there and the
others' weights are renormalized.

The combined forecast is the weighted mixture of the models' normal forecasts, summarized
by its mean and variance (law of total variance) and read as a normal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ffe.domain.errors import ConfigError
from ffe.forecast.metrics import crps_normal
from ffe.forecast.rolling import Panel

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """``eta``: how hard a model's past losses pull its weight down; ``discount``: the
    per-outcome decay of old losses (1: none; 0.99 remembers roughly the last hundred).
    The defaults were chosen by nested walk-forward (``bench/bench_combiners.py``): on the
    bundled SP500 and NASDAQ, at 1 and 5 bars, they had a smaller CRPS out of sample than
    the earlier eta 2, discount 0.99 on all four, significantly on three."""

    eta: float = 0.5
    discount: float = 1.0

    def __post_init__(self) -> None:
        if not self.eta >= 0:
            raise ConfigError(f"eta must be >= 0, got {self.eta}")
        if not 0 < self.discount <= 1:
            raise ConfigError(f"discount must be in (0, 1], got {self.discount}")


class Hedge:
    """Online weights over ``n_models`` models; ``observe`` feeds one origin's losses."""

    __slots__ = ("_config", "_score", "observed")

    def __init__(self, n_models: int, config: HedgeConfig | None = None) -> None:
        self._config = config or HedgeConfig()
        self._score = np.zeros(n_models)
        self.observed = 0

    def observe(self, crps: FloatArray) -> None:
        """Add one origin's CRPS per model (NaN for a model with no forecast there)."""
        known = np.isfinite(crps)
        if not known.any():
            return
        average = float(crps[known].mean())
        relative = np.where(known, crps / average if average > 0 else 1.0, 1.0)
        self._score = self._config.discount * self._score + relative
        self.observed += 1

    def weights(self, available: npt.NDArray[np.bool_] | None = None) -> FloatArray:
        """Current weights, zero for models not ``available``, summing to one."""
        logits = -self._config.eta * (self._score - self._score.min())
        raw = np.exp(logits)
        if available is not None:
            raw = np.where(available, raw, 0.0)
        total = raw.sum()
        out: FloatArray = raw / total if total > 0 else raw
        return out

    @property
    def scores(self) -> FloatArray:
        return self._score.copy()

    def state(self) -> dict[str, Any]:
        """What the weights were learnt from so far, as JSON (``restore`` takes it back)."""
        return {"score": self._score.tolist(), "observed": self.observed}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back a ``state()``; refused when it is for another number of models."""
        self._score = _same_models(state["score"], self._score)
        self.observed = int(state["observed"])


def _same_models(saved: Any, current: FloatArray) -> FloatArray:
    """``saved`` (one value a model) as an array, refused when it is for another number of
    models than ``current``."""
    found = np.asarray(saved, dtype=np.float64)
    if found.shape != current.shape:
        raise ConfigError(
            f"the saved ensemble state is for {found.size} models, this ensemble has "
            f"{current.size}: start a fresh run (`--fresh`) after changing its models"
        )
    return found


def panel_crps(panel: Panel, step: int) -> FloatArray:
    """CRPS of every model at every origin for ``step`` bars ahead, shape (models, origins);
    NaN where the model failed or the outcome is not in the data."""
    actual = panel.actual[:, step - 1]
    mean, sd = panel.mean[:, :, step - 1], panel.sd[:, :, step - 1]
    out = np.full(mean.shape, np.nan)
    ok = np.isfinite(mean) & np.isfinite(sd) & np.isfinite(actual)[None, :]
    if ok.any():
        out[ok] = crps_normal(np.broadcast_to(actual, mean.shape)[ok], mean[ok], sd[ok])
    return out


def hedge_weights(panel: Panel, step: int, config: HedgeConfig | None = None) -> FloatArray:
    """Hedge's weights at every origin, shape (origins, models) (see ``online_weights``)."""
    return online_weights(panel, step, "hedge", config)


class Leader:
    """Follow the leader, online: all the weight on the available model with the lowest mean
    loss so far (each model over the origins it forecast); equal weights among the available
    ones before any loss is known. The same interface as ``Hedge``."""

    __slots__ = ("_count", "_total", "observed")

    def __init__(self, n_models: int) -> None:
        self._total = np.zeros(n_models)
        self._count = np.zeros(n_models)
        self.observed = 0

    def observe(self, crps: FloatArray) -> None:
        known = np.isfinite(crps)
        if not known.any():
            return
        self._total[known] += crps[known]
        self._count[known] += 1
        self.observed += 1

    def weights(self, available: npt.NDArray[np.bool_] | None = None) -> FloatArray:
        n = len(self._total)
        usable = np.ones(n, dtype=bool) if available is None else np.asarray(available)
        out = np.zeros(n)
        candidates = usable & (self._count > 0)
        if candidates.any():
            mean = np.where(candidates, self._total / np.maximum(self._count, 1), np.inf)
            out[int(np.argmin(mean))] = 1.0
        elif usable.any():
            out[usable] = 1.0 / usable.sum()
        return out

    def state(self) -> dict[str, Any]:
        return {
            "total": self._total.tolist(),
            "count": self._count.tolist(),
            "observed": self.observed,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._total = _same_models(state["total"], self._total)
        self._count = _same_models(state["count"], self._count)
        self.observed = int(state["observed"])


class Equal:
    """Equal weights over the available models; it learns nothing. ``Hedge``'s interface."""

    __slots__ = ("_n", "observed")

    def __init__(self, n_models: int) -> None:
        self._n, self.observed = n_models, 0

    def observe(self, crps: FloatArray) -> None:
        if np.isfinite(crps).any():
            self.observed += 1

    def weights(self, available: npt.NDArray[np.bool_] | None = None) -> FloatArray:
        usable = np.ones(self._n) if available is None else np.asarray(available, np.float64)
        total = usable.sum()
        out: FloatArray = usable / total if total > 0 else usable
        return out

    def state(self) -> dict[str, Any]:
        return {"observed": self.observed}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.observed = int(state["observed"])


Combiner = Hedge | Leader | Equal
COMBINERS = ("hedge", "leader", "equal")


def make_combiner(name: str, n_models: int, config: HedgeConfig | None = None) -> Combiner:
    """The online combiner ``name`` (one of ``COMBINERS``) over ``n_models`` models."""
    if name == "hedge":
        return Hedge(n_models, config)
    if name == "leader":
        return Leader(n_models)
    if name == "equal":
        return Equal(n_models)
    raise ConfigError(f"unknown combiner {name!r}: use one of {', '.join(COMBINERS)}")


def online_weights(
    panel: Panel, step: int, combiner: str = "hedge", config: HedgeConfig | None = None
) -> FloatArray:
    """Weights at every origin, shape (origins, models), of the online ``combiner`` fed the
    ``step``-ahead losses known by each origin (origins are consecutive bars, so origin ``i``
    knows the outcomes of origins ``<= i - step``)."""
    crps = panel_crps(panel, step)
    available = np.isfinite(panel.mean[:, :, step - 1])
    online = make_combiner(combiner, len(panel.models), config)
    out = np.zeros((len(panel.origins), len(panel.models)))
    for i in range(len(panel.origins)):
        known = i - step
        if known >= 0:
            online.observe(crps[:, known])
        out[i] = online.weights(available[:, i])
    return out


def leader_weights(panel: Panel, step: int) -> FloatArray:
    """Follow the leader at every origin (``Leader``): a real-time rule to compare with."""
    return online_weights(panel, step, "leader")


def equal_weights(panel: Panel, step: int) -> FloatArray:
    available = np.isfinite(panel.mean[:, :, step - 1]).T.astype(np.float64)
    total = available.sum(axis=1, keepdims=True)
    out: FloatArray = np.divide(available, total, out=np.zeros_like(available), where=total > 0)
    return out


def combine(mean: FloatArray, sd: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mixture mean and standard deviation of per-model normals.

    ``mean``/``sd`` have shape (models, origins, ...) and ``weights`` (origins, models);
    NaN forecasts must carry zero weight."""
    w = weights.T.reshape(weights.shape[1], weights.shape[0], *([1] * (mean.ndim - 2)))
    m = np.nan_to_num(mean)
    s = np.nan_to_num(sd)
    mix_mean = (w * m).sum(axis=0)
    second = (w * (s**2 + m**2)).sum(axis=0)
    mix_sd = np.sqrt(np.maximum(second - mix_mean**2, 0.0))
    none = weights.sum(axis=1) == 0
    mix_mean[none], mix_sd[none] = np.nan, np.nan
    return mix_mean, mix_sd
