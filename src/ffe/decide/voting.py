"""Extra voters in the ensemble (an LLM): asked at decision origins only, and the decisions
they failed to vote on saying so and why."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ffe.domain.orders import Decision
from ffe.forecast.base import Forecaster, ForecastError, Series
from ffe.forecast.rolling import Panel

_BRIEF = 160  # characters of why a voter failed, in the decision it affected


def ask_at(
    voter: Forecaster,
    panel: Panel,
    series: Series,
    rows: list[int],
    failures: dict[int, ForecastError],
) -> Panel:
    """``panel`` with ``voter``'s forecasts at the origins ``rows`` (NaN elsewhere, and where
    it failed: the other models' weights are then renormalized without it, and ``failures``
    holds why by row)."""
    n, h, k = len(panel.origins), panel.horizon, panel.lower.shape[1]
    mean, sd = np.full((n, h), np.nan), np.full((n, h), np.nan)
    lower, upper = np.full((k, n, h), np.nan), np.full((k, n, h), np.nan)
    for i in rows:
        seen = series.upto(int(panel.origins[i]) + 1)
        try:
            voter.fit(seen)
            forecast = voter.forecast(seen, h)
        except ForecastError as exc:
            failures[i] = exc
            continue
        mean[i], sd[i] = forecast.mean, forecast.sd
        lower[:, i], upper[:, i] = forecast.lower, forecast.upper
    return panel.with_model(voter.name, mean, sd, lower, upper)


def failure_reason(error: ForecastError) -> str:
    """Why a voter failed, in one word for counting (``LlmVoteError.reason``)."""
    return str(getattr(error, "reason", "no_forecast"))


def voter_failed(decision: Decision, error: ForecastError, voter: str = "llm") -> Decision:
    """``decision`` saying that ``voter`` failed to vote and why, briefly (no URL, no key):
    in its rationale and in ``details["llm_failure"]``."""
    reason = failure_reason(error)
    brief = str(getattr(error, "brief", "") or error)[:_BRIEF]
    failure = {"voter": voter, "reason": reason, "brief": brief}
    details = {**decision.details, "llm_failure": failure}
    said = decision.rationale.rstrip(".")
    note = f"The {voter} voter failed ({reason}: {brief}); the other models decided."
    return replace(decision, rationale=f"{said}. {note}", details=details)
