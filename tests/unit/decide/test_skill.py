"""The confidence's skill: AUC against sklearn's, the Brier skill score against an expanding
base rate worked out by hand, the chance band of a calibrated forecaster's ECE, and the
verdict a reader sees."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ffe.decide.calibration import reliability_table
from ffe.decide.skill import confidence_skill, expanding_base_rate


def test_base_rate_when_outcomes_arrive_later_then_only_known_ones_count() -> None:
    hit = [1, 0, 1, 1]
    decided = [0, 1, 2, 3]
    known = [2, 3, 4, 5]  # each known two steps after its decision

    rate = expanding_base_rate(hit, decided, known)

    assert rate.tolist() == [0.5, 0.5, 1.0, 0.5]  # none, none, {1}, {1, 0}


def test_skill_when_confidence_sorts_outcomes_then_auc_as_sklearn_and_positive_skill() -> None:
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.2, 0.9, 400)
    hit = (rng.uniform(size=400) < conf).astype(int)  # calibrated and informative
    steps = np.arange(400)

    found = confidence_skill(conf, hit, steps, steps + 5, simulations=300)

    assert found.auc == pytest.approx(roc_auc_score(hit, conf), abs=1e-12)
    assert found.auc_p is not None
    assert found.auc_p < 1e-6
    base = expanding_base_rate(hit, steps, steps + 5)
    expected_bss = 1 - np.mean((conf - hit) ** 2) / np.mean((base - hit) ** 2)
    assert found.brier_skill == pytest.approx(expected_bss, rel=1e-12)
    assert found.brier_skill > 0
    assert found.has_skill
    assert found.ece_within_chance
    assert found.verdict().startswith("the confidence has skill: AUC")


def test_skill_when_confidence_is_noise_then_no_skill_in_words() -> None:
    rng = np.random.default_rng(6)
    conf = rng.uniform(0.5, 0.6, 300)
    hit = (rng.uniform(size=300) < 0.5).astype(int)  # nothing to do with the confidence
    steps = np.arange(300)

    found = confidence_skill(conf, hit, steps, steps + 1, simulations=300)

    assert found.auc_p is not None
    assert found.auc_p > 0.05
    assert not found.has_skill
    assert "has no skill here" in found.verdict()
    assert "should not gate or size on it" in found.verdict()


def test_ece_band_when_forecaster_is_calibrated_then_its_ece_mostly_inside() -> None:
    rng = np.random.default_rng(7)
    conf = rng.uniform(0.3, 0.7, 200)
    steps = np.arange(200)
    band = confidence_skill(conf, np.ones(200), steps, steps + 1, simulations=400).ece_band
    inside = [
        reliability_table(conf, (rng.uniform(size=200) < conf).astype(int)).ece <= band[1]
        for _ in range(200)
    ]

    assert 0 < band[0] < band[1] < 0.2
    assert 0.88 <= np.mean(inside) <= 0.99  # the 95th percentile, give or take sampling


def test_skill_when_every_outcome_is_the_same_then_auc_unmeasured() -> None:
    steps = np.arange(20)
    found = confidence_skill(np.full(20, 0.6), np.ones(20), steps, steps + 1, simulations=50)

    assert (found.auc, found.auc_p, found.has_skill) == (None, None, False)
    assert "cannot be measured yet" in found.verdict()
