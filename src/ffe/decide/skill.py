"""Does a decision's confidence know anything? Skill, next to calibration.

A confidence can be calibrated and useless: stating 52% for every decision of a coin that
comes up 52% of the time is calibrated and tells nothing about which decisions will come
true. ``confidence_skill`` measures what calibration does not:

- AUC: the chance that a decision that came true was stated with more confidence than one
  that did not (0.5: no discrimination), with the two-sided Mann-Whitney p-value against 0.5;
- Brier skill score against an expanding base rate: ``1 - Brier / Brier_base``, where the base
  forecast for each decision is the hit rate of the outcomes known when it was made (0.5
  before any): above 0, the confidence beat what the record alone said;
- the ECE a perfectly calibrated forecaster shows by chance with these very confidences
  (hits drawn as Bernoulli(confidence), ``simulations`` times): an ECE inside that band is
  no evidence of miscalibration.

``has_skill`` is the verdict in one flag: AUC above 0.5 at p < 0.05 and a positive Brier
skill score. Without it, a decision should not gate or size on its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import mannwhitneyu

from ffe.decide.calibration import reliability_table

SIGNIFICANCE = 0.05


@dataclass(frozen=True, slots=True)
class Skill:
    """See the module docstring. ``auc``/``auc_p`` are None when every outcome is the same
    (no discrimination can be measured); ``ece_band`` is the (5%, 95%) range of a calibrated
    forecaster's ECE."""

    n: int
    hit_rate: float
    auc: float | None
    auc_p: float | None
    brier: float
    brier_base: float
    brier_skill: float
    ece: float
    ece_band: tuple[float, float]
    has_skill: bool

    @property
    def ece_within_chance(self) -> bool:
        return self.ece <= self.ece_band[1]

    def verdict(self) -> str:
        """The finding in words, for the CLI, the API and the dashboard."""
        if self.auc is None:
            return "every resolved decision had the same outcome: skill cannot be measured yet"
        auc = f"AUC {self.auc:.3f} (p = {self.auc_p:.2g})"
        bss = f"Brier skill {self.brier_skill:+.3f} against the expanding base rate"
        ece = (
            f"ECE {self.ece:.3f}, within the {self.ece_band[1]:.3f} a calibrated forecaster "
            "reaches by chance"
            if self.ece_within_chance
            else f"ECE {self.ece:.3f}, beyond the {self.ece_band[1]:.3f} of chance"
        )
        if self.has_skill:
            return f"the confidence has skill: {auc}, {bss}; {ece}"
        return (
            f"the confidence has no skill here: {auc}, {bss}; {ece}. Decisions should not "
            "gate or size on it: the ensemble applies its threshold only while its confidence "
            "shows skill on the outcomes known (confidence_gate=skill)"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "hit_rate": self.hit_rate,
            "auc": self.auc,
            "auc_p": self.auc_p,
            "brier": self.brier,
            "brier_base": self.brier_base,
            "brier_skill": self.brier_skill,
            "ece": self.ece,
            "ece_band": list(self.ece_band),
            "ece_within_chance": self.ece_within_chance,
            "has_skill": self.has_skill,
            "verdict": self.verdict(),
        }


def expanding_base_rate(
    hit: npt.ArrayLike, decided_at: npt.ArrayLike, known_at: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """For each decision, the hit rate of the outcomes known by its time (``known_at <=
    decided_at``), 0.5 before any is known."""
    hits = np.asarray(hit, dtype=np.float64)
    decided = np.asarray(decided_at)
    known = np.asarray(known_at)
    order = np.argsort(known, kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(hits[order])])
    counts = np.searchsorted(known[order], decided, side="right")
    rate = np.full(len(hits), 0.5)
    seen = counts > 0
    rate[seen] = cumulative[counts[seen]] / counts[seen]
    return rate


def auc_test(
    confidence: npt.NDArray[np.float64], hit: npt.NDArray[np.float64]
) -> tuple[float | None, float | None]:
    """The AUC of ``confidence`` for ``hit`` (0/1) and its two-sided Mann-Whitney p-value;
    (None, None) until both outcomes have occurred."""
    came_true, did_not = confidence[hit == 1], confidence[hit == 0]
    if not (came_true.size and did_not.size):
        return None, None
    test = mannwhitneyu(came_true, did_not, alternative="two-sided")
    return float(test.statistic) / (came_true.size * did_not.size), float(test.pvalue)


def confidence_skill(
    confidence: npt.ArrayLike,
    hit: npt.ArrayLike,
    decided_at: npt.ArrayLike,
    known_at: npt.ArrayLike,
    *,
    bins: int = 10,
    simulations: int = 1000,
    seed: int = 0,
) -> Skill:
    """The skill of ``confidence`` at predicting ``hit`` (see the module docstring).
    ``decided_at``/``known_at`` order the outcomes for the base rate (any comparable values:
    bar indices, or datetime64)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hits = np.asarray(hit, dtype=np.float64)
    table = reliability_table(conf, hits, bins=bins)  # validates both
    base = expanding_base_rate(hits, decided_at, known_at)
    brier_base = float(np.mean((base - hits) ** 2))
    brier_skill = 1.0 - table.brier / brier_base if brier_base > 0 else 0.0
    auc, auc_p = auc_test(conf, hits)
    rng = np.random.default_rng(seed)
    chance = [
        reliability_table(conf, (rng.random(conf.size) < conf).astype(np.float64), bins).ece
        for _ in range(simulations)
    ]
    band = (float(np.quantile(chance, 0.05)), float(np.quantile(chance, 0.95)))
    skilled = (
        auc is not None
        and auc_p is not None
        and auc > 0.5
        and auc_p < SIGNIFICANCE
        and brier_skill > 0
    )
    return Skill(
        n=int(conf.size),
        hit_rate=float(hits.mean()),
        auc=auc,
        auc_p=auc_p,
        brier=table.brier,
        brier_base=brier_base,
        brier_skill=brier_skill,
        ece=table.ece,
        ece_band=band,
        has_skill=skilled,
    )
