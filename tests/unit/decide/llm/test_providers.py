"""Both HTTP providers against the local server: protocol, retries, timeouts, breaker, stats."""

from __future__ import annotations

import json
import random
import socket

import pytest

from ffe.decide.llm.providers import (
    LlmRequestError,
    LlmUnavailableError,
    OllamaProvider,
    OpenAICompatibleProvider,
    RetryPolicy,
)
from ffe.decide.llm.schema import VIEW_SCHEMA, LlmAnswerError
from ffe.domain.errors import ConfigError
from ffe.risk.breaker import CircuitBreaker

from .conftest import COMPLETION_TOKENS, PROMPT_TOKENS, answer_for

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "t-0: 100"}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(kind, server, *, sleeps=None, retries=3, breaker=None, timeout_s=5.0, **extra):
    """A provider of ``kind`` on the local server; waits are recorded in ``sleeps``."""
    options = {
        "timeout_s": timeout_s,
        "retry": RetryPolicy(max_retries=retries, backoff_s=0.5, max_backoff_s=4.0),
        "sleep": (sleeps if sleeps is not None else []).append,
        "rng": random.Random(0),
        "breaker": breaker,
        **extra,
    }
    if kind == "ollama":
        return OllamaProvider(server.url, "llama-test", **options)
    return OpenAICompatibleProvider(f"{server.url}/v1", "gpt-test", **options)


@pytest.fixture(params=["ollama", "openai"])
def kind(request) -> str:
    return request.param


def test_complete_when_server_answers_then_content_and_tokens(llm_server, kind):
    provider = make(kind, llm_server)

    answer = provider.complete(MESSAGES, VIEW_SCHEMA, seed=7)

    assert json.loads(answer) == answer_for(MESSAGES)
    assert provider.stats.requests == 1
    assert provider.stats.prompt_tokens == PROMPT_TOKENS
    assert provider.stats.completion_tokens == COMPLETION_TOKENS


def test_complete_when_ollama_then_native_chat_request(llm_server):
    make("ollama", llm_server).complete(MESSAGES, VIEW_SCHEMA, seed=7)

    sent = llm_server.requests[0]
    assert sent["path"] == "/api/chat"
    body = sent["body"]
    assert body["model"] == "llama-test"
    assert body["stream"] is False
    assert body["format"] == VIEW_SCHEMA
    assert body["options"] == {"temperature": 0, "seed": 7}
    assert body["messages"] == MESSAGES


def test_complete_when_openai_then_strict_json_schema_request_with_bearer_key(llm_server):
    provider = make("openai", llm_server, api_key="sk-test")

    provider.complete(MESSAGES, VIEW_SCHEMA, seed=7)

    sent = llm_server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    body = sent["body"]
    assert body["temperature"] == 0
    assert body["seed"] == 7
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"] == VIEW_SCHEMA
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test"


def test_complete_when_openai_without_key_then_no_authorization_header(llm_server):
    make("openai", llm_server).complete(MESSAGES, VIEW_SCHEMA, seed=7)

    assert "authorization" not in {k.lower() for k in llm_server.requests[0]["headers"]}


def test_complete_when_500_twice_then_retried_with_growing_backoff(llm_server, kind):
    llm_server.then("500", "500")
    sleeps: list[float] = []
    provider = make(kind, llm_server, sleeps=sleeps)

    answer = provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert json.loads(answer)["rationale"].startswith("single view")
    assert len(llm_server.requests) == 3
    assert provider.stats.retries == 2
    assert provider.stats.requests == 3
    assert provider.stats.failures == 0
    assert 0.25 <= sleeps[0] <= 0.5  # half the ceiling plus jitter up to the other half
    assert 0.5 <= sleeps[1] <= 1.0


def test_complete_when_500_beyond_retries_then_unavailable_after_every_attempt(llm_server, kind):
    llm_server.default = "500"
    provider = make(kind, llm_server, retries=2)

    with pytest.raises(LlmUnavailableError, match=r"after 3 attempts \(HTTP 500\)"):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert len(llm_server.requests) == 3
    assert provider.stats.failures == 1


def test_complete_when_429_with_retry_after_then_waits_that_long(llm_server, kind):
    llm_server.then("429")
    llm_server.retry_after = "3"
    sleeps: list[float] = []

    make(kind, llm_server, sleeps=sleeps).complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert sleeps == [3.0]
    assert len(llm_server.requests) == 2


def test_complete_when_retry_after_too_long_then_gives_up_at_once(llm_server):
    llm_server.then("429")
    llm_server.retry_after = "3600"
    sleeps: list[float] = []

    with pytest.raises(LlmUnavailableError, match="HTTP 429"):
        make("ollama", llm_server, sleeps=sleeps).complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert sleeps == []
    assert len(llm_server.requests) == 1


def test_complete_when_404_then_request_error_without_retry(llm_server, kind):
    llm_server.then("404")
    provider = make(kind, llm_server)

    with pytest.raises(LlmRequestError, match=r"HTTP 404.*not found.*check the model name"):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert len(llm_server.requests) == 1
    assert provider.stats.retries == 0


def test_complete_when_server_slower_than_timeout_then_retried_then_unavailable(llm_server):
    llm_server.default = "slow"
    provider = make("ollama", llm_server, retries=1, timeout_s=0.2)

    with pytest.raises(LlmUnavailableError, match=r"after 2 attempts \(timed out after 0.2s\)"):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert len(llm_server.requests) == 2


def test_complete_when_slow_once_then_second_attempt_answers(llm_server):
    llm_server.then("slow")
    provider = make("openai", llm_server, timeout_s=0.2)

    answer = provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert json.loads(answer) == answer_for(MESSAGES)
    assert provider.stats.retries == 1


def test_complete_when_nothing_listens_then_unavailable_names_url_and_fix():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OllamaProvider(f"http://127.0.0.1:{port}", "m", retry=RetryPolicy(max_retries=0))

    with pytest.raises(LlmUnavailableError) as caught:
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/api/chat" in message
    assert "after 1 attempt (" in message
    assert "ollama serve" in message


def test_breaker_when_calls_keep_failing_then_opens_and_stops_hitting_server(llm_server):
    llm_server.default = "500"
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, window_s=60, cooldown_s=30, clock=clock)
    provider = make("ollama", llm_server, retries=0, breaker=breaker)
    for _ in range(2):
        with pytest.raises(LlmUnavailableError, match="HTTP 500"):
            provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)
    assert breaker.state == "open"

    with pytest.raises(LlmUnavailableError, match="circuit open"):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert len(llm_server.requests) == 2
    assert provider.stats.failures == 3


def test_breaker_when_cooldown_passed_and_probe_succeeds_then_closed(llm_server):
    llm_server.then("500", "500")
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, window_s=60, cooldown_s=30, clock=clock)
    provider = make("openai", llm_server, retries=0, breaker=breaker)
    for _ in range(2):
        with pytest.raises(LlmUnavailableError):
            provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    clock.now += 30
    assert breaker.state == "half_open"
    provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert breaker.state == "closed"
    assert len(llm_server.requests) == 3


def test_breaker_when_probe_fails_then_open_again(llm_server):
    llm_server.default = "500"
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, window_s=60, cooldown_s=30, clock=clock)
    provider = make("ollama", llm_server, retries=0, breaker=breaker)
    with pytest.raises(LlmUnavailableError):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)
    clock.now += 30

    with pytest.raises(LlmUnavailableError, match="HTTP 500"):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert breaker.state == "open"
    assert len(llm_server.requests) == 2


def test_breaker_when_request_refused_with_404_then_not_counted_as_failure(llm_server):
    llm_server.default = "404"
    breaker = CircuitBreaker(failure_threshold=1, clock=Clock())
    provider = make("ollama", llm_server, retries=0, breaker=breaker)

    with pytest.raises(LlmRequestError):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    assert breaker.state == "closed"


def test_stats_when_several_answers_then_tokens_summed_and_latency_percentiles(llm_server, kind):
    provider = make(kind, llm_server)

    for _ in range(3):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)

    stats = provider.stats.as_dict()
    assert stats["requests"] == 3
    assert stats["prompt_tokens"] == 3 * PROMPT_TOKENS
    assert stats["completion_tokens"] == 3 * COMPLETION_TOKENS
    assert len(provider.stats.latencies_s) == 3
    assert 0 < stats["latency_p50_s"] <= stats["latency_p99_s"] < 5


def test_stats_latency_when_known_values_then_nearest_rank_percentiles(llm_server):
    provider = make("ollama", llm_server)
    provider.stats.latencies_s.extend([0.4, 0.1, 0.3, 0.2])

    assert provider.stats.latency_s(50) == 0.2
    assert provider.stats.latency_s(99) == 0.4


def test_stats_latency_when_no_answer_then_none(llm_server):
    assert make("ollama", llm_server).stats.as_dict()["latency_p50_s"] is None


def test_complete_when_route_is_not_an_llm_api_then_request_error(llm_server):
    provider = OllamaProvider(f"{llm_server.url}/wrong", "m", retry=RetryPolicy(max_retries=0))

    with pytest.raises(LlmRequestError, match="HTTP 404"):
        provider.complete(MESSAGES, VIEW_SCHEMA, seed=0)


def test_provider_when_base_url_has_no_scheme_then_config_error():
    with pytest.raises(ConfigError, match="must start with http"):
        OllamaProvider("localhost:11434", "m")


def test_openai_reply_when_model_refuses_then_answer_error(llm_server):
    provider = make("openai", llm_server)
    payload = {"choices": [{"message": {"role": "assistant", "refusal": "no", "content": None}}]}

    with pytest.raises(LlmAnswerError, match="refused to answer: no"):
        provider._reply(payload)


def test_ollama_reply_when_envelope_foreign_then_request_error_about_base_url(llm_server):
    provider = make("ollama", llm_server)

    with pytest.raises(LlmRequestError, match="does not answer like an ollama server"):
        provider._reply({"choices": []})
