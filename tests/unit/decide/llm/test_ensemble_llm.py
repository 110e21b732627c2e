"""The LLM voter inside the ``ensemble`` strategy, end to end against the local server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ffe.data.synthetic import SyntheticMarket
from ffe.decide.ensemble import EnsembleStrategy
from ffe.domain.errors import StrategyError
from ffe.domain.market import MarketData

CHEAP = {
    "models": "naive,drift",
    "window": 60,
    "refit_every": 30,
    "every": 10,
    "threshold": 0.5,
    "workers": 1,
}


@pytest.fixture(scope="module")
def market() -> MarketData:
    return SyntheticMarket(1, 160, seed=4).to_market()


def _strategy(url: str, cache: Path, **overrides: Any) -> EnsembleStrategy:
    params = {
        **CHEAP,
        "llm_provider": "ollama",
        "llm_url": url,
        "llm_model": "test-model",
        "llm_cache": str(cache),
        "llm_timeout": 2.0,
        **overrides,
    }
    return EnsembleStrategy(**params)


def test_ensemble_when_llm_configured_then_it_votes_on_every_decision_bar(
    llm_server: Any, market: MarketData, tmp_path: Path
) -> None:
    explained = _strategy(llm_server.url, tmp_path).explain(market.history())

    assert explained.decisions
    assert len(llm_server.requests) == len(explained.decisions)  # asked on decision bars only
    for decision in explained.decisions:
        weights = dict(decision.votes)
        assert weights["llm"] > 0
        assert math.isclose(sum(weights.values()), 1.0)
        assert "llm" in decision.rationale


def test_ensemble_when_replayed_from_cache_then_same_decisions_without_a_server(
    llm_server: Any, market: MarketData, tmp_path: Path
) -> None:
    first = _strategy(llm_server.url, tmp_path).explain(market.history())
    asked = len(llm_server.requests)
    llm_server.stop()

    replay = _strategy(llm_server.url, tmp_path, llm_cache_mode="read_only")
    second = replay.explain(market.history())

    assert len(llm_server.requests) == asked
    assert [d.rationale for d in second.decisions] == [d.rationale for d in first.decisions]
    np.testing.assert_array_equal(first.targets, second.targets)


def test_ensemble_when_llm_fails_then_other_models_decide_alone(
    llm_server: Any, market: MarketData, tmp_path: Path
) -> None:
    llm_server.default = "500"
    strategy = _strategy(llm_server.url, tmp_path, llm_cache_mode="off", llm_retries=0)

    explained = strategy.explain(market.history())

    assert explained.decisions
    assert llm_server.requests  # it was asked, and failed
    for decision in explained.decisions:
        weights = dict(decision.votes)
        assert "llm" not in weights
        assert math.isclose(sum(weights.values()), 1.0)
        assert "The llm voter failed (" in decision.rationale
        assert llm_server.url not in decision.rationale
    first = explained.decisions[0]
    assert first.details["llm_failure"] == {
        "voter": "llm",
        "reason": "http_error",
        "brief": "HTTP 500 after 1 attempt",
    }
    assert first.rationale.endswith(
        "The llm voter failed (http_error: HTTP 500 after 1 attempt); the other models decided."
    )


def test_ensemble_when_breaker_opens_then_decisions_say_so_without_asking(
    llm_server: Any, market: MarketData, tmp_path: Path
) -> None:
    llm_server.default = "500"
    strategy = _strategy(llm_server.url, tmp_path, llm_cache_mode="off", llm_retries=0)

    explained = strategy.explain(market.history())

    reasons = [d.details["llm_failure"]["reason"] for d in explained.decisions]
    assert len(llm_server.requests) == 5  # the breaker opened after 5 failures
    assert reasons[:5] == ["http_error"] * 5
    assert set(reasons[5:]) == {"breaker_open"}
    assert "circuit breaker open" in explained.decisions[-1].rationale


def test_ensemble_when_key_given_then_sent_as_bearer_and_never_shown(
    llm_server: Any, market: MarketData, tmp_path: Path
) -> None:
    strategy = _strategy(
        f"{llm_server.url}/v1", tmp_path, llm_provider="openai", llm_api_key="sk-test-123"
    )

    explained = strategy.explain(market.history())

    assert explained.decisions
    assert {r["headers"]["Authorization"] for r in llm_server.requests} == {"Bearer sk-test-123"}
    assert "sk-test-123" not in repr(strategy)


def test_ensemble_when_llm_settings_are_wrong_then_strategy_error() -> None:
    with pytest.raises(StrategyError, match="ensemble"):
        EnsembleStrategy(llm_provider="no-such-provider")
