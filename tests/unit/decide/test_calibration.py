"""Confidence calibration: reliability tables and look-ahead-free online recalibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from ffe.decide.calibration import LiveRecalibrator, OnlineRecalibrator, reliability_table


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stated confidences and hits whose true rate is 0.5 + 0.5 · (confidence - 0.5)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(size=n)
    return confidence, rng.uniform(size=n) < 0.5 + 0.5 * (confidence - 0.5)


def decisions(n: int, seed: int, max_delay: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Decision times 0..n-1 with outcomes known 1..max_delay bars later."""
    decided = np.arange(n)
    return decided, decided + np.random.default_rng(seed).integers(1, max_delay + 1, n)


# --- Reliability table ----------------------------------------------------------------


def test_reliability_table_when_hand_example_then_bins_ece_and_brier() -> None:
    confidence = [0.2, 0.4, 0.6, 0.9]
    hit = [False, True, True, True]

    table = reliability_table(confidence, hit, bins=2)

    low, high = table.rows
    assert (low.low, low.high, low.count) == (0.0, 0.5, 2)
    assert low.mean_confidence == pytest.approx(0.3)
    assert low.hit_rate == 0.5
    assert (high.low, high.high, high.count) == (0.5, 1.0, 2)
    assert high.mean_confidence == pytest.approx(0.75)
    assert high.hit_rate == 1.0
    # ECE: half the decisions off by 0.2, half by 0.25.
    assert table.ece == pytest.approx(0.5 * 0.2 + 0.5 * 0.25)
    assert table.brier == pytest.approx((0.04 + 0.36 + 0.16 + 0.01) / 4)
    assert table.brier == pytest.approx(brier_score_loss(hit, confidence))


def test_reliability_table_when_bins_empty_then_count_zero_and_nan_rates() -> None:
    table = reliability_table([0.3, 0.35, 1.0], [1, 0, 1], bins=10)

    counts = [row.count for row in table.rows]
    assert counts == [0, 0, 0, 2, 0, 0, 0, 0, 0, 1]  # 0.3 opens its bin; 1.0 closes the last
    assert math.isnan(table.rows[0].mean_confidence)
    assert math.isnan(table.rows[0].hit_rate)
    assert table.rows[3].hit_rate == 0.5
    assert table.ece == pytest.approx((2 * abs(0.5 - 0.325) + 0.0) / 3)


def test_reliability_table_when_calibrated_or_overconfident_then_ece_near_theory() -> None:
    confidence, hit = overconfident(40_000, seed=1)
    calibrated_hit = np.random.default_rng(2).uniform(size=40_000) < confidence

    # Overconfident by 0.5 · |c - 0.5|: ten bins average it to 0.5 · 0.25.
    assert reliability_table(confidence, hit).ece == pytest.approx(0.125, abs=0.01)
    assert reliability_table(confidence, calibrated_hit).ece < 0.015


@pytest.mark.parametrize(
    ("confidence", "hit", "bins", "message"),
    [
        ([0.5, 1.2], [1, 0], 10, r"confidence must lie in \[0, 1\].*1\.2"),
        ([-0.1, 0.5], [1, 0], 10, r"confidence must lie in \[0, 1\]"),
        ([0.5, np.nan], [1, 0], 10, "confidence holds NaN"),
        ([0.5, 0.6], [1, 0, 1], 10, "2 confidences but 3 hits"),
        ([0.5, 0.6], [1, np.nan], 10, "hit must be boolean or 0/1"),
        ([0.5, 0.6], [1, 2], 10, "hit must be boolean or 0/1"),
        ([], [], 10, "no decisions"),
        ([[0.5]], [[1]], 10, "must be 1-D"),
        ([0.5], [1], 0, "bins must be at least 1"),
    ],
)
def test_reliability_table_when_bad_input_then_value_error_says_what_to_fix(
    confidence: list[float], hit: list[float], bins: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        reliability_table(confidence, hit, bins)


# --- Online recalibration -------------------------------------------------------------


def test_recalibrate_when_refit_every_decision_then_isotonic_on_outcomes_known_by_then() -> None:
    confidence, hit = overconfident(300, seed=3)
    decided, known = decisions(300, seed=4)

    calibrated = OnlineRecalibrator(refit_every=1, min_samples=20).recalibrate(
        confidence, decided, known, hit
    )

    for i in (40, 123, 299):
        usable = known <= decided[i]  # an outcome known at the decision's own bar counts
        assert usable.sum() >= 20
        model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
        model.fit(confidence[usable], hit[usable])
        assert calibrated[i] == pytest.approx(model.predict(confidence[[i]])[0])


def test_recalibrate_when_fewer_known_than_min_samples_then_raw_confidence() -> None:
    confidence, hit = overconfident(200, seed=5)
    decided = np.arange(200)
    known = decided + 5  # decision i sees the outcomes of decisions 0..i-5

    calibrated = OnlineRecalibrator(refit_every=1, min_samples=30).recalibrate(
        confidence, decided, known, hit
    )

    np.testing.assert_array_equal(calibrated[:34], confidence[:34])
    assert not np.array_equal(calibrated[34:], confidence[34:])


def test_recalibrate_when_refit_every_exceeds_decisions_then_first_fit_serves_all() -> None:
    confidence, hit = overconfident(200, seed=6)
    decided = np.arange(200)
    known = decided + 1

    calibrated = OnlineRecalibrator(refit_every=1000, min_samples=50).recalibrate(
        confidence, decided, known, hit
    )

    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
    model.fit(confidence[:50], hit[:50])  # the 50 outcomes known at decision 50
    np.testing.assert_array_equal(calibrated[:50], confidence[:50])
    np.testing.assert_allclose(calibrated[50:], model.predict(confidence[50:]))


@pytest.mark.parametrize("refit_every", [1, 7, 20])
def test_recalibrate_when_outcomes_known_later_change_then_earlier_calibration_unchanged(
    refit_every: int,
) -> None:
    confidence, hit = overconfident(400, seed=7)
    decided, known = decisions(400, seed=8, max_delay=40)
    recalibrator = OnlineRecalibrator(refit_every=refit_every, min_samples=30)
    calibrated = recalibrator.recalibrate(confidence, decided, known, hit)
    rng = np.random.default_rng(9)

    for i in (60, 200, 380):  # 380: later decisions still see some rewritten outcomes
        rewritten = hit.copy()
        future = known > decided[i]
        rewritten[future] = rng.uniform(size=future.sum()) < 0.5

        again = recalibrator.recalibrate(confidence, decided, known, rewritten)

        assert again[i] == calibrated[i]
        assert not np.array_equal(again, calibrated)  # the rewrite does reach later decisions


def test_recalibrate_when_overconfident_then_later_decisions_much_better_calibrated() -> None:
    confidence, hit = overconfident(5000, seed=10)
    decided, known = decisions(5000, seed=11)

    calibrated = OnlineRecalibrator(refit_every=20, min_samples=50).recalibrate(
        confidence, decided, known, hit
    )

    raw_ece = reliability_table(confidence[2500:], hit[2500:]).ece
    recalibrated_ece = reliability_table(calibrated[2500:], hit[2500:]).ece
    assert raw_ece > 0.1
    assert recalibrated_ece < 0.4 * raw_ece
    assert calibrated.min() >= 0.0
    assert calibrated.max() <= 1.0


def test_recalibrate_when_5000_decisions_then_fits_once_per_refit_block(monkeypatch) -> None:
    # What keeps it fast (not a timing, which a busy machine makes flaky): one isotonic fit
    # per refit_every decisions, not one per decision.
    from sklearn.isotonic import IsotonicRegression

    confidence, hit = overconfident(5000, seed=12)
    decided, known = decisions(5000, seed=13)
    recalibrator = OnlineRecalibrator(refit_every=20, min_samples=50)
    fits = []
    original = IsotonicRegression.fit
    monkeypatch.setattr(
        IsotonicRegression, "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k)
    )

    recalibrator.recalibrate(confidence, decided, known, hit)

    assert 0 < len(fits) <= 5000 // 20 + 1


@pytest.mark.parametrize(
    ("decided", "known", "message"),
    [
        ([0, 2, 1], [1, 3, 4], "decided_at must be non-decreasing"),
        ([0, 1, 2], [1, 1, 3], "known_at must be after decided_at"),
        ([0, 1, 2], [1.0, 2.0, 3.0], "known_at must be 3 integer time indices"),
        ([0, 1], [1, 2], "decided_at must be 3 integer time indices"),
    ],
)
def test_recalibrate_when_bad_times_then_value_error_says_what_to_fix(
    decided: list[float], known: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OnlineRecalibrator().recalibrate([0.5, 0.6, 0.7], decided, known, [1, 0, 1])


def test_recalibrate_when_confidence_bad_then_value_error() -> None:
    with pytest.raises(ValueError, match="confidence holds NaN"):
        OnlineRecalibrator().recalibrate([0.5, np.nan], [0, 1], [1, 2], [1, 0])


@pytest.mark.parametrize(
    ("refit_every", "min_samples", "message"),
    [(0, 50, "refit_every must be at least 1"), (20, 0, "min_samples must be at least 1")],
)
def test_online_recalibrator_when_settings_invalid_then_value_error(
    refit_every: int, min_samples: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OnlineRecalibrator(refit_every=refit_every, min_samples=min_samples)


@pytest.mark.parametrize(
    ("seed", "refit_every", "min_samples", "lag"), [(1, 20, 50, 5), (2, 3, 4, 1), (3, 7, 10, 12)]
)
def test_live_recalibrator_when_fed_one_decision_at_a_time_then_equals_the_batch(
    seed: int, refit_every: int, min_samples: int, lag: int
) -> None:
    """Decision by decision, settling each outcome once its time has come, and restarted
    from its state half-way: the batch ``recalibrate``'s numbers exactly."""
    rng = np.random.default_rng(seed)
    n = 300
    conf = rng.uniform(0.3, 0.8, n)
    hit = (rng.uniform(size=n) < conf**2).astype(int)
    decided = np.cumsum(rng.integers(1, 4, n))
    known = decided + lag
    batch = OnlineRecalibrator(refit_every, min_samples).recalibrate(conf, decided, known, hit)

    live = LiveRecalibrator(refit_every, min_samples)
    got, counts = [], []
    for i in range(n):
        for j in live.unsettled(int(decided[i])):
            live.settle(j, bool(hit[j]))
        if i == n // 2:  # a restart: a new one from the state
            again = LiveRecalibrator(refit_every, min_samples)
            again.restore(json.loads(json.dumps(live.state())))
            live = again
        value, count = live.decide(float(conf[i]), int(decided[i]), int(known[i]))
        got.append(value)
        counts.append(count)

    assert got == batch.tolist()
    assert counts == np.searchsorted(np.sort(known), decided, side="right").tolist()
    assert got != conf.tolist()  # some were recalibrated


def test_live_recalibrator_when_an_outcome_is_not_settled_then_refuses_to_fit() -> None:
    live = LiveRecalibrator(refit_every=1, min_samples=1)
    live.decide(0.6, 0, 1)

    with pytest.raises(ValueError, match="not settled"):
        live.decide(0.7, 1, 2)
