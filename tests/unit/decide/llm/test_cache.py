"""The answer cache: keys, atomic files, modes, and exact offline replay of a backtest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.support.fake_llm import FakeLlmServer

from ffe.decide.llm import LlmForecaster, OllamaProvider, RetryPolicy
from ffe.decide.llm.cache import LlmCacheError, LlmCacheMiss, ResponseCache, cache_key
from ffe.decide.llm.schema import VIEW_SCHEMA
from ffe.forecast.base import ForecastError

MESSAGES = [{"role": "user", "content": "t-0: 100"}]


def key(**change) -> str:
    request = {
        "kind": "ollama",
        "base_url": "http://localhost:11434",
        "model": "m",
        "messages": MESSAGES,
        "schema": VIEW_SCHEMA,
        "seed": 0,
    }
    request.update(change)
    return cache_key(**request)


def test_cache_key_when_same_request_then_same_sha256():
    assert key() == key()
    assert len(key()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "openai"},
        {"base_url": "http://localhost:8000/v1"},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "t-0: 101"}]},
        {"schema": {"type": "object"}},
        {"seed": 1},
    ],
)
def test_cache_key_when_any_part_changes_then_different(change):
    assert key(**change) != key()


def test_put_then_get_when_read_write_then_answer_in_a_json_file(tmp_path):
    cache = ResponseCache(tmp_path / "llm")

    cache.put(key(), '{"a": 1}', {"model": "m"})

    assert cache.get(key()) == '{"a": 1}'
    stored = json.loads(cache.path(key()).read_text(encoding="utf-8"))
    assert stored == {"key": key(), "model": "m", "answer": '{"a": 1}'}
    assert [p.name for p in cache.path(key()).parent.iterdir()] == [f"{key()}.json"]


def test_get_when_miss_and_read_write_then_none(tmp_path):
    assert ResponseCache(tmp_path).get(key()) is None


def test_get_when_miss_and_read_only_then_cache_miss_says_how_to_record(tmp_path):
    with pytest.raises(LlmCacheMiss, match=r"read_only.*cache mode read_write to record it"):
        ResponseCache(tmp_path, "read_only").get(key())


def test_put_when_read_only_or_off_then_nothing_written(tmp_path):
    for mode in ("read_only", "off"):
        ResponseCache(tmp_path, mode).put(key(), "x")

    assert list(tmp_path.iterdir()) == []


def test_get_when_off_then_stored_answers_ignored(tmp_path):
    ResponseCache(tmp_path).put(key(), "x")

    assert ResponseCache(tmp_path, "off").get(key()) is None


def test_get_when_file_corrupt_then_treated_as_miss(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put(key(), "x")
    cache.path(key()).write_text("{not json", encoding="utf-8")

    assert cache.get(key()) is None


def test_put_when_directory_not_writable_then_cache_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")

    with pytest.raises(LlmCacheError, match="cannot store an LLM answer"):
        ResponseCache(blocker / "llm").put(key(), "x")


def test_cache_when_unknown_mode_then_value_error(tmp_path):
    with pytest.raises(ValueError, match="cache mode"):
        ResponseCache(tmp_path, "sometimes")  # type: ignore[arg-type]


def _voter(url: str, cache_dir, cache_mode="read_write", **options) -> LlmForecaster:
    provider = OllamaProvider(url, "m", retry=RetryPolicy(max_retries=0))
    return LlmForecaster(provider, cache=ResponseCache(cache_dir, cache_mode), **options)


def _walk_forward(voter: LlmForecaster, series, origins) -> list:
    return [voter.forecast(series.upto(n), 5) for n in origins]


@pytest.mark.parametrize("mode", ["single", "debate"])
def test_replay_when_cached_then_zero_requests_and_identical_forecasts(
    llm_server, make_series, tmp_path, mode
):
    series, origins = make_series(120), range(60, 120, 10)
    first = _walk_forward(_voter(llm_server.url, tmp_path, mode=mode), series, origins)
    asked = len(llm_server.requests)
    replay = _voter(llm_server.url, tmp_path, mode=mode)

    second = _walk_forward(replay, series, origins)

    assert asked == len(origins) * (3 if mode == "debate" else 1)
    assert len(llm_server.requests) == asked
    assert replay.provider.stats.requests == 0
    assert replay.provider.stats.cache_hits == asked
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.sd, b.sd)


def test_replay_when_read_only_and_server_gone_then_same_forecasts(
    llm_server, make_series, tmp_path
):
    series = make_series(80)
    recorded = _voter(llm_server.url, tmp_path).forecast(series, 5)
    llm_server.stop()

    replayed = _voter(llm_server.url, tmp_path, "read_only").forecast(series, 5)  # stopped

    np.testing.assert_array_equal(recorded.mean, replayed.mean)


def test_replay_when_another_server_then_its_answers_are_not_shared(
    llm_server, make_series, tmp_path
):
    series = make_series(80)
    _voter(llm_server.url, tmp_path).forecast(series, 5)
    other = FakeLlmServer()
    other.start()
    try:
        other.default = "500"
        voter = _voter(other.url, tmp_path)

        with pytest.raises(ForecastError, match="HTTP 500"):
            voter.forecast(series, 5)  # the first server's answer does not stand in
    finally:
        other.stop()

    assert len(other.requests) == 1
    assert voter.provider.stats.cache_hits == 0
    assert len(list(tmp_path.rglob("*.json"))) == 1  # only the first server's answer


def test_forecast_when_read_only_miss_then_forecast_error_caused_by_cache_miss(
    llm_server, make_series, tmp_path
):
    voter = _voter(llm_server.url, tmp_path, "read_only")

    with pytest.raises(ForecastError, match="no cached LLM answer") as caught:
        voter.forecast(make_series(80), 5)

    assert isinstance(caught.value.__cause__, LlmCacheMiss)
    assert llm_server.requests == []


def test_cache_when_answer_invalid_then_not_stored_and_asked_again(
    llm_server, make_series, tmp_path
):
    llm_server.then("invalid_json")
    voter = _voter(llm_server.url, tmp_path)
    with pytest.raises(ForecastError):
        voter.forecast(make_series(80), 5)

    voter.forecast(make_series(80), 5)

    assert len(llm_server.requests) == 2
    assert len(list(tmp_path.rglob("*.json"))) == 1
