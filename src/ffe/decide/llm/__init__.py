"""LLMs as voters in the forecasting ensemble: Ollama or any OpenAI-compatible server, asked
for a structured view through point-in-time prompts, with an answer cache for exact replay.

``make_llm_forecaster`` takes plain values (this package never reads settings); the
composition root passes it the ``llm`` settings.
"""

from __future__ import annotations

from pathlib import Path

from ffe.decide.llm.cache import CACHE_MODES, CacheMode, LlmCacheError, LlmCacheMiss, ResponseCache
from ffe.decide.llm.debate import Debate
from ffe.decide.llm.providers import (
    OLLAMA_URL,
    LlmProvider,
    LlmRequestError,
    LlmStats,
    LlmUnavailableError,
    OllamaProvider,
    OpenAICompatibleProvider,
    RetryPolicy,
)
from ffe.decide.llm.schema import VIEW_SCHEMA, LlmAnswerError, LlmError, LlmView
from ffe.decide.llm.voter import (
    MODES,
    Consultation,
    LlmForecaster,
    LlmVoteError,
    Mode,
    view_to_forecast,
)
from ffe.domain.errors import ConfigError

__all__ = [
    "CACHE_MODES",
    "MODES",
    "OLLAMA_URL",
    "VIEW_SCHEMA",
    "CacheMode",
    "Consultation",
    "Debate",
    "LlmAnswerError",
    "LlmCacheError",
    "LlmCacheMiss",
    "LlmError",
    "LlmForecaster",
    "LlmProvider",
    "LlmRequestError",
    "LlmStats",
    "LlmUnavailableError",
    "LlmView",
    "LlmVoteError",
    "Mode",
    "OllamaProvider",
    "OpenAICompatibleProvider",
    "RetryPolicy",
    "make_llm_forecaster",
    "make_provider",
    "view_to_forecast",
]


def make_provider(
    provider: str,
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    max_retries: int = 3,
) -> OllamaProvider | OpenAICompatibleProvider:
    """An ``ollama`` or ``openai`` provider; ConfigError naming what is missing."""
    if not model:
        raise ConfigError(
            f"an LLM model is needed for provider {provider!r} (llm.model or --model), "
            "e.g. llama3.1:8b"
        )
    retry = RetryPolicy(max_retries=max_retries)
    if provider == "ollama":
        return OllamaProvider(base_url or OLLAMA_URL, model, timeout_s=timeout_s, retry=retry)
    if provider == "openai":
        if not base_url:
            raise ConfigError(
                "an OpenAI-compatible provider needs a base URL (llm.base_url or --base-url), "
                "e.g. http://localhost:8000/v1"
            )
        return OpenAICompatibleProvider(base_url, model, api_key, timeout_s=timeout_s, retry=retry)
    raise ConfigError(f"unknown LLM provider {provider!r}; choose none, ollama or openai")


def make_llm_forecaster(
    provider: str,
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    max_retries: int = 3,
    anonymize: bool = True,
    mode: Mode = "single",
    cache_dir: Path | None = None,
    cache_mode: CacheMode = "read_write",
    seed: int = 0,
    label: str = "llm",
) -> LlmForecaster | None:
    """The LLM voter the settings describe, or None for provider ``none``.

    ``cache_dir`` None means no answer cache. With ``cache_mode`` ``read_only`` no server is
    needed at all: every answer must be in the cache."""
    if provider == "none":
        return None
    if mode not in MODES:
        raise ConfigError(f"unknown LLM mode {mode!r}; choose {', '.join(MODES)}")
    if cache_mode not in CACHE_MODES:
        raise ConfigError(f"unknown cache mode {cache_mode!r}; choose {', '.join(CACHE_MODES)}")
    chosen = make_provider(
        provider,
        base_url=base_url,
        model=model,
        api_key=api_key,
        timeout_s=timeout_s,
        max_retries=max_retries,
    )
    cache = ResponseCache(cache_dir, cache_mode) if cache_dir is not None else None
    return LlmForecaster(
        chosen, cache=cache, mode=mode, anonymize=anonymize, seed=seed, label=label
    )
