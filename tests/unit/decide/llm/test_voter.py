"""LlmForecaster: a Forecaster that turns a model's view into a forecast, or a ForecastError."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffe.decide.llm import (
    LlmForecaster,
    LlmView,
    OllamaProvider,
    OpenAICompatibleProvider,
    RetryPolicy,
    make_llm_forecaster,
    view_to_forecast,
)
from ffe.decide.llm.cache import ResponseCache
from ffe.decide.llm.schema import LlmAnswerError
from ffe.domain.errors import ConfigError
from ffe.forecast.base import Forecaster, ForecastError

from .conftest import answer_for


def view(expected: float = 2.0, uncertainty: float = 4.0) -> LlmView:
    return LlmView(
        direction="up",
        expected_return_pct=expected,
        uncertainty_pct=uncertainty,
        confidence=0.5,
        rationale="r",
    )


def voter(url: str, **options) -> LlmForecaster:
    return LlmForecaster(OllamaProvider(url, "m", retry=RetryPolicy(max_retries=0)), **options)


def test_llm_forecaster_when_checked_then_is_a_forecaster(llm_server):
    forecaster = voter(llm_server.url)

    assert isinstance(forecaster, Forecaster)
    assert forecaster.name == "llm"
    assert forecaster.min_history() == 30


def test_view_to_forecast_when_horizon_then_log_mean_linear_and_sd_by_sqrt_step():
    forecast = view_to_forecast(view(expected=2.0, uncertainty=4.0), 4)

    np.testing.assert_allclose(forecast.mean[-1], math.log(1.02))
    np.testing.assert_allclose(forecast.mean, math.log(1.02) * np.array([1, 2, 3, 4]) / 4)
    np.testing.assert_allclose(forecast.sd, 0.04 * np.sqrt(np.array([1, 2, 3, 4]) / 4))
    assert forecast.horizon == 4
    assert np.all(forecast.lower[0] < forecast.mean)
    assert np.all(forecast.upper[1] > forecast.upper[0])


def test_forecast_when_server_answers_then_forecast_from_its_view(llm_server, make_series):
    series = make_series(100)
    forecaster = voter(llm_server.url)

    forecast = forecaster.forecast(series, 5)

    sent = llm_server.requests[0]["body"]["messages"]
    expected = answer_for(sent)
    assert forecast.mean[-1] == pytest.approx(math.log1p(expected["expected_return_pct"] / 100))
    assert forecast.sd[-1] == pytest.approx(expected["uncertainty_pct"] / 100)
    assert "ASSET" in sent[1]["content"]  # anonymized by default
    assert "SP500" not in sent[1]["content"]


def test_forecast_when_not_anonymized_then_symbol_in_prompt(llm_server, make_series):
    voter(llm_server.url, anonymize=False).forecast(make_series(100), 5)

    assert "SP500" in llm_server.requests[0]["body"]["messages"][1]["content"]


@pytest.mark.parametrize("behaviour", ["invalid_json", "bad_schema"])
def test_forecast_when_answer_unusable_then_forecast_error_with_cause(
    llm_server, make_series, behaviour
):
    llm_server.then(behaviour)

    with pytest.raises(ForecastError, match="llm: the model's answer") as caught:
        voter(llm_server.url).forecast(make_series(100), 5)

    assert isinstance(caught.value.__cause__, LlmAnswerError)


def test_forecast_when_server_down_then_forecast_error_names_label(llm_server, make_series):
    llm_server.default = "500"

    with pytest.raises(ForecastError, match="llm-b: no answer from the LLM server"):
        voter(llm_server.url, label="llm-b").forecast(make_series(100), 5)


def test_forecast_when_history_too_short_then_forecast_error_without_asking(
    llm_server, make_series
):
    with pytest.raises(ForecastError, match="needs 30 bars"):
        voter(llm_server.url).forecast(make_series(20), 5)

    assert llm_server.requests == []


def test_forecast_when_same_origin_twice_then_same_seed_and_same_forecast(llm_server, make_series):
    forecaster = voter(llm_server.url, seed=42)
    series = make_series(100)

    first, second = forecaster.forecast(series, 5), forecaster.forecast(series, 5)

    np.testing.assert_array_equal(first.mean, second.mean)
    assert [r["body"]["options"]["seed"] for r in llm_server.requests] == [42, 42]


def test_fit_when_called_then_asks_nothing(llm_server, make_series):
    voter(llm_server.url).fit(make_series(100))

    assert llm_server.requests == []


def test_debate_when_consulted_then_bull_bear_judge_and_judges_view_votes(llm_server, make_series):
    forecaster = voter(llm_server.url, mode="debate")

    consultation = forecaster.consult(make_series(100), 5)

    systems = [r["body"]["messages"][0]["content"] for r in llm_server.requests]
    assert len(systems) == 3
    assert systems[0].startswith("You are the bull")
    assert systems[1].startswith("You are the bear")
    assert systems[2].startswith("You are the judge")
    assert consultation.debate is not None
    assert consultation.debate.bull.expected_return_pct > 0
    assert consultation.debate.bear.expected_return_pct < 0
    assert consultation.view.rationale.startswith("judge view")
    judge_prompt = llm_server.requests[2]["body"]["messages"][1]["content"]
    assert consultation.debate.bull.rationale in judge_prompt
    assert consultation.debate.bear.rationale in judge_prompt


def test_debate_when_forecast_then_from_the_judges_view(llm_server, make_series):
    forecast = voter(llm_server.url, mode="debate").forecast(make_series(100), 5)

    judge = answer_for(llm_server.requests[2]["body"]["messages"])
    assert forecast.mean[-1] == pytest.approx(math.log1p(judge["expected_return_pct"] / 100))


def test_debate_when_bear_answer_invalid_then_forecast_error_and_judge_not_asked(
    llm_server, make_series
):
    llm_server.then("valid", "bad_schema")

    with pytest.raises(ForecastError):
        voter(llm_server.url, mode="debate").forecast(make_series(100), 5)

    assert len(llm_server.requests) == 2


def test_make_llm_forecaster_when_provider_none_then_none():
    assert make_llm_forecaster("none") is None


def test_make_llm_forecaster_when_ollama_then_default_url_and_cache(tmp_path):
    forecaster = make_llm_forecaster(
        "ollama", model="llama3.1:8b", cache_dir=tmp_path, cache_mode="read_only", mode="debate"
    )

    assert forecaster is not None
    assert isinstance(forecaster.provider, OllamaProvider)
    assert forecaster.provider.url == "http://localhost:11434/api/chat"
    assert isinstance(forecaster.cache, ResponseCache)
    assert forecaster.cache.mode == "read_only"
    assert forecaster.mode == "debate"


def test_make_llm_forecaster_when_openai_then_key_and_url_used():
    forecaster = make_llm_forecaster(
        "openai", base_url="http://h/v1/", model="gpt", api_key="k", anonymize=False
    )

    assert forecaster is not None
    assert isinstance(forecaster.provider, OpenAICompatibleProvider)
    assert forecaster.provider.url == "http://h/v1/chat/completions"
    assert forecaster.cache is None
    assert forecaster.anonymize is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "ollama"}, "model is needed"),
        ({"provider": "openai", "model": "m"}, "needs a base URL"),
        ({"provider": "claude", "model": "m"}, "unknown LLM provider"),
        ({"provider": "ollama", "model": "m", "mode": "vote"}, "unknown LLM mode"),
        ({"provider": "ollama", "model": "m", "cache_mode": "x"}, "unknown cache mode"),
    ],
)
def test_make_llm_forecaster_when_misconfigured_then_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_llm_forecaster(**kwargs)
