"""The LLM voter's parameters come from the ``llm`` settings: a parameter given wins, then the
setting, then the strategy's default; the API key stays a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ffe import bootstrap
from ffe.config import Settings
from ffe.decide.strategy import make_strategy, plain_params


def _settings(tmp_path: Path, **llm: Any) -> Settings:
    return Settings(data={"dir": tmp_path}, llm=llm)  # type: ignore[arg-type]


def _openai(tmp_path: Path) -> Settings:
    return _settings(
        tmp_path,
        provider="openai",
        base_url="http://llm.internal:8000/v1",
        model="qwen",
        api_key="sk-settings",
        timeout_s=7,
        max_retries=1,
        mode="debate",
        anonymize=False,
        cache_mode="read_only",
    )


def test_llm_params_when_provider_set_then_every_llm_parameter_from_the_settings(
    tmp_path: Path,
) -> None:
    found = bootstrap.llm_params(_openai(tmp_path), "ensemble")

    key = found.pop("llm_api_key")
    assert isinstance(key, SecretStr)
    assert key.get_secret_value() == "sk-settings"
    assert found == {
        "llm_provider": "openai",
        "llm_url": "http://llm.internal:8000/v1",
        "llm_model": "qwen",
        "llm_mode": "debate",
        "llm_cache": str(tmp_path / "llm-cache"),  # none set: llm-cache in the data directory
        "llm_cache_mode": "read_only",
        "llm_timeout": 7.0,
        "llm_retries": 1,
        "llm_anonymize": False,
    }


def test_llm_params_when_given_on_the_command_line_then_they_win(tmp_path: Path) -> None:
    given = {"llm_model": "llama3.1:8b", "llm_timeout": "3"}

    params = bootstrap.strategy_params(_openai(tmp_path), "ensemble", given)
    strategy = make_strategy("ensemble", params)

    assert strategy.llm_model == "llama3.1:8b"  # type: ignore[attr-defined]
    assert strategy.llm_timeout == 3.0  # type: ignore[attr-defined]
    assert strategy.llm_url == "http://llm.internal:8000/v1"  # type: ignore[attr-defined]
    assert strategy.llm_api_key.get_secret_value() == "sk-settings"  # type: ignore[attr-defined]


def test_llm_params_when_provider_none_then_nothing_filled(tmp_path: Path) -> None:
    settings = _settings(tmp_path, model="qwen", api_key="sk-unused")

    assert bootstrap.llm_params(settings, "ensemble") == {}
    assert "llm_model" not in bootstrap.strategy_params(settings, "ensemble", {})


def test_llm_params_when_provider_given_then_the_rest_from_the_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, model="qwen", api_key="sk-local")

    found = bootstrap.llm_params(settings, "ensemble", {"llm_provider": "ollama"})

    assert "llm_provider" not in found
    assert found["llm_model"] == "qwen"
    assert "llm_url" not in found  # unset: the strategy's default (Ollama's own address)
    assert found["llm_api_key"].get_secret_value() == "sk-local"


def test_llm_params_when_strategy_has_no_llm_then_nothing(tmp_path: Path) -> None:
    assert bootstrap.llm_params(_openai(tmp_path), "sma_cross") == {}


def test_plain_params_when_key_set_then_never_among_them(tmp_path: Path) -> None:
    strategy = bootstrap.strategy(_openai(tmp_path), "ensemble", {})

    recorded = plain_params(strategy)

    assert "llm_api_key" not in recorded
    assert "sk-settings" not in repr(recorded)
    assert "sk-settings" not in repr(strategy)
    assert recorded["llm_url"] == "http://llm.internal:8000/v1"
