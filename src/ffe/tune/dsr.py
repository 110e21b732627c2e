"""The deflated Sharpe ratio (Bailey and López de Prado, 2014): how likely the best of many
trials has a true Sharpe ratio above zero, once the luck of picking the best is priced in.

The best of N trials with no skill at all still shows a Sharpe ratio around the expected
maximum of N draws, ``sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))`` (V the variance
of the trials' Sharpe ratios, g the Euler-Mascheroni constant, Z the normal quantile). The
deflated Sharpe ratio is the probabilistic Sharpe ratio of the best trial against that
threshold instead of zero, which also accounts for the skew and fat tails of its returns and
for how many returns it has. Every Sharpe ratio here is per period (per bar), not annualised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ffe.domain.market import FloatArray

_EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of a study's best trial and what went into it."""

    probability: float  # that the best trial's true Sharpe ratio is above zero
    sharpe: float  # the best trial's, per period
    expected_max: float  # the best Sharpe ratio N trials without skill would show, per period
    n_trials: int
    trial_variance: float  # of the trials' Sharpe ratios, per period
    skew: float  # of the best trial's returns
    kurtosis: float  # of the best trial's returns (3 for normal returns)
    n_returns: int
    periods_per_year: float = 1.0  # to show the Sharpe ratios annualised

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the two Sharpe ratios annualised beside the inputs."""
        scale = math.sqrt(self.periods_per_year)
        return {
            "probability": _finite(self.probability),
            "sharpe_annualised": _finite(self.sharpe * scale),
            "expected_max_sharpe_annualised": _finite(self.expected_max * scale),
            "n_trials": self.n_trials,
            "trial_sharpe_std_annualised": _finite(math.sqrt(self.trial_variance) * scale),
            "skew": _finite(self.skew),
            "kurtosis": _finite(self.kurtosis),
            "n_returns": self.n_returns,
        }


def expected_max_sharpe(n_trials: int, trial_variance: float) -> float:
    """The Sharpe ratio the best of ``n_trials`` unskilled trials is expected to show."""
    from scipy.stats import norm

    if n_trials < 2 or not trial_variance > 0:
        return 0.0
    first = float(norm.ppf(1.0 - 1.0 / n_trials))
    second = float(norm.ppf(1.0 - 1.0 / (n_trials * math.e)))
    return math.sqrt(trial_variance) * ((1.0 - _EULER_GAMMA) * first + _EULER_GAMMA * second)


def deflated_sharpe(
    sharpe: float,
    trial_variance: float,
    n_trials: int,
    skew: float,
    kurtosis: float,
    n_returns: int,
    periods_per_year: float = 1.0,
) -> DeflatedSharpe:
    """The deflated Sharpe ratio from summary figures (per-period Sharpe ratios)."""
    from scipy.stats import norm

    threshold = expected_max_sharpe(n_trials, trial_variance)
    spread = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n_returns < 2 or not spread > 0 or not math.isfinite(sharpe):
        probability = math.nan
    else:
        z = (sharpe - threshold) * math.sqrt(n_returns - 1) / math.sqrt(spread)
        probability = float(norm.cdf(z))
    return DeflatedSharpe(
        probability, sharpe, threshold, n_trials, trial_variance, skew, kurtosis, n_returns,
        periods_per_year,
    )  # fmt: skip


def deflated_sharpe_of(
    trial_sharpes: Sequence[float],
    n_trials: int,
    best_returns: FloatArray,
    periods_per_year: float = 1.0,
) -> DeflatedSharpe:
    """The deflated Sharpe ratio of the best trial, from its per-bar returns, and of the
    per-period Sharpe ratios of the trials that ran to the end (their variance); ``n_trials``
    counts every trial tested, pruned ones included."""
    from scipy.stats import kurtosis, skew

    returns = np.asarray(best_returns, dtype=float)
    returns = returns[np.isfinite(returns)]
    known = [s for s in trial_sharpes if math.isfinite(s)]
    variance = float(np.var(known, ddof=1)) if len(known) > 1 else 0.0
    std = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    if not std > 0:
        nan = math.nan
        return DeflatedSharpe(nan, nan, nan, n_trials, variance, nan, nan, len(returns))
    sharpe = float(np.mean(returns)) / std
    return deflated_sharpe(
        sharpe,
        variance,
        n_trials,
        float(skew(returns)),
        float(kurtosis(returns, fisher=False)),
        len(returns),
        periods_per_year,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
