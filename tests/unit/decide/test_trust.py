"""Confidence that earns its use: recalibration stated only where it lowered the Brier score,
the threshold applied only where the confidence has shown skill, the same live as in batch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ffe.decide.ensemble import EnsembleStrategy
from ffe.decide.trust import ConfidenceRule, ConfidenceTrust, LiveConfidence
from ffe.domain import StrategyError

HORIZON = 3


def _walk(trust: ConfidenceTrust, raw: np.ndarray, candidate: np.ndarray, hit: np.ndarray):
    """Decide at times 0, 1, 2, ..., each outcome known HORIZON later."""
    out = []
    for i in range(len(raw)):
        for j in trust.unsettled(i):
            trust.settle(j, bool(hit[j]))
        out.append(trust.decide(float(raw[i]), float(candidate[i]), i, i + HORIZON))
    return out


def test_trust_when_confidence_predicts_outcomes_then_gates_once_enough_are_known() -> None:
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.2, 0.9, 300)
    hit = rng.random(300) < raw  # calibrated and discriminating

    trusts = _walk(ConfidenceTrust(min_outcomes=50, every=10), raw, raw, hit)

    assert not any(t.gated for t in trusts[: 50 + HORIZON])  # too few outcomes yet
    assert all(t.gated for t in trusts[150:])
    assert trusts[-1].auc is not None
    assert trusts[-1].auc > 0.6
    assert "skill shown" in trusts[-1].reason()


def test_trust_when_confidence_is_noise_then_never_gates_and_says_why() -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(0.45, 0.65, 300)
    hit = rng.random(300) < 0.5  # unrelated to the confidence

    trusts = _walk(ConfidenceTrust(min_outcomes=50, every=10), raw, raw, hit)

    assert not any(t.gated for t in trusts)
    assert trusts[-1].known == 300 - HORIZON
    assert trusts[-1].reason().startswith("not gating: no skill shown on 297 outcomes")


def test_trust_when_mode_always_then_gates_without_skill() -> None:
    raw = np.full(40, 0.6)
    hit = np.arange(40) % 2 == 0

    trusts = _walk(ConfidenceTrust(min_outcomes=10, mode="always"), raw, raw, hit)

    assert all(t.gated for t in trusts)


def test_trust_when_recalibration_lowers_brier_on_known_outcomes_then_stated() -> None:
    rng = np.random.default_rng(3)
    hit = rng.random(200) < 0.5
    raw = np.full(200, 0.7)  # overconfident
    candidate = np.where(hit, 0.6, 0.4)  # closer to every outcome than 0.7

    trusts = _walk(ConfidenceTrust(min_outcomes=20), raw, candidate, hit)

    assert not any(t.recalibrated for t in trusts[:HORIZON])  # nothing known yet
    assert all(t.recalibrated for t in trusts[HORIZON + 5 :])
    assert all(t.stated == t.candidate for t in trusts if t.recalibrated)


def test_trust_when_recalibration_raises_brier_then_raw_is_stated() -> None:
    rng = np.random.default_rng(4)
    hit = rng.random(200) < 0.5
    raw = np.full(200, 0.5)
    candidate = np.where(hit, 0.3, 0.7)  # confidently wrong

    trusts = _walk(ConfidenceTrust(min_outcomes=20), raw, candidate, hit)

    assert not any(t.recalibrated for t in trusts)
    assert all(t.stated == 0.5 for t in trusts)


def test_trust_chooses_only_on_outcomes_known_when_deciding() -> None:
    """A candidate that would win only on outcomes still to come is not chosen before them."""
    hit = np.array([True] * 10 + [False] * 10)
    raw = np.full(20, 0.5)
    candidate = np.array([0.45] * 10 + [0.05] * 10)  # worse on the first ten, far better after

    trusts = _walk(ConfidenceTrust(min_outcomes=5), raw, candidate, hit)

    assert not any(t.recalibrated for t in trusts[: 10 + HORIZON])
    assert trusts[-1].recalibrated


def test_trust_when_outcome_due_but_not_settled_then_value_error() -> None:
    trust = ConfidenceTrust(min_outcomes=5)
    trust.decide(0.6, 0.6, 0, HORIZON)

    with pytest.raises(ValueError, match="settle"):
        trust.decide(0.6, 0.6, HORIZON, 2 * HORIZON)


def test_trust_when_mode_unknown_then_strategy_error_names_the_choices() -> None:
    with pytest.raises(StrategyError, match="skill, always"):
        ConfidenceTrust(min_outcomes=5, mode="sometimes")
    with pytest.raises(StrategyError, match="confidence_gate must be one of skill, always"):
        EnsembleStrategy(confidence_gate="never")


@pytest.mark.parametrize("calibrate", [True, False])
def test_live_confidence_when_restarted_midway_then_the_batch_numbers(calibrate: bool) -> None:
    rng = np.random.default_rng(5)
    n = 260
    values = np.cumsum(0.01 * rng.standard_normal(n + HORIZON))  # log prices
    side = np.where(rng.random(n) < 0.6, 1.0, -1.0)
    realized = values[np.arange(n) + HORIZON] - values[np.arange(n)]
    raw = np.clip(0.5 + 0.3 * side * realized / 0.02 + 0.05 * rng.standard_normal(n), 0, 1)
    rule = ConfidenceRule(HORIZON, cost=0.001, calibrate=calibrate, min_outcomes=30, prior=50.0)

    batch = rule.batch(raw, side, np.arange(n), realized, never=n + HORIZON + 1)
    live, confidence = [], LiveConfidence(rule)
    for t in range(n):
        if t == 140:  # a restart: only the JSON state survives
            saved = json.loads(json.dumps(confidence.state()))
            confidence = LiveConfidence(rule)
            confidence.restore(saved)
        live.append(confidence.decide(values[: t + 1], float(raw[t]), int(side[t])))

    assert live == batch
    assert any(t.gated for t in batch)  # this confidence has skill: the gate is exercised
    if calibrate:
        assert any(t.recalibrated for t in batch)
        assert any(not math.isclose(t.candidate, r) for t, r in zip(batch, raw, strict=True))


def test_live_confidence_when_state_predates_the_trust_then_its_decisions_count_raw() -> None:
    rule = ConfidenceRule(HORIZON, cost=0.0, min_outcomes=5)
    old = LiveConfidence(rule)
    values = np.linspace(0, 0.1, 12)
    for t in range(8):
        old.decide(values[: t + 1], 0.6, 1)
    state = old.state()
    del state["trust"]

    restored = LiveConfidence(rule)
    restored.restore(state)

    assert len(restored._trust) == 8
    assert restored.decide(values[:9], 0.6, 1).known == 8 - HORIZON + 1
