from __future__ import annotations

import math

import numpy as np
import pytest

from ffe.tune.dsr import deflated_sharpe, deflated_sharpe_of, expected_max_sharpe


def test_deflated_sharpe_when_the_papers_example_then_its_figures() -> None:
    # Bailey and López de Prado (2014), section 4: 100 trials whose annualised Sharpe ratios
    # vary by 0.5, the best at 2.5 annualised over 1,250 daily returns, skew -3, kurtosis 10.
    # By hand: SR0 = sqrt(0.5/250) * (0.4228 * 2.3263 + 0.5772 * 2.6823) = 0.1132 per day;
    # z = (0.1581 - 0.1132) * sqrt(1249) / sqrt(1 + 3 * 0.1581 + 9/4 * 0.1581**2) = 1.282.
    found = deflated_sharpe(2.5 / math.sqrt(250), 0.5 / 250, 100, -3.0, 10.0, 1250, 250)

    assert found.expected_max == pytest.approx(0.1132, abs=5e-4)
    assert found.probability == pytest.approx(0.90, abs=2e-3)
    assert found.to_dict()["sharpe_annualised"] == pytest.approx(2.5)


def test_deflated_sharpe_when_more_trials_then_less_likely_real() -> None:
    few = deflated_sharpe(0.1, 0.002, 10, 0.0, 3.0, 1000)
    many = deflated_sharpe(0.1, 0.002, 1000, 0.0, 3.0, 1000)

    assert many.expected_max > few.expected_max
    assert many.probability < few.probability


def test_expected_max_when_one_trial_or_no_spread_then_zero() -> None:
    assert expected_max_sharpe(1, 0.5) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0


def test_deflated_sharpe_of_when_returns_then_their_sharpe_skew_and_kurtosis() -> None:
    rng = np.random.default_rng(3)
    returns = rng.normal(0.001, 0.01, 2000)

    found = deflated_sharpe_of([0.01, 0.03, 0.05, -0.02], 10, returns)

    assert found.sharpe == pytest.approx(np.mean(returns) / np.std(returns, ddof=1))
    assert found.kurtosis == pytest.approx(3.0, abs=0.3)
    assert found.trial_variance == pytest.approx(np.var([0.01, 0.03, 0.05, -0.02], ddof=1))
    assert (found.n_trials, found.n_returns) == (10, 2000)
    assert 0.0 < found.probability < 1.0


def test_deflated_sharpe_of_when_flat_returns_then_no_probability() -> None:
    found = deflated_sharpe_of([0.1, 0.2], 2, np.zeros(100))

    assert math.isnan(found.probability)
    assert found.to_dict()["probability"] is None
