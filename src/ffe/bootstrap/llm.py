"""The LLM voter's strategy parameters from the ``llm`` settings: one precedence rule for
every path that builds a strategy (backtests, sweeps, tuning, the agent, the API's jobs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ffe.config import Settings

LLM_SETTINGS = "llm."  # the settings section of a strategy's LLM voter


def llm_params(
    settings: Settings, name: str, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The LLM voter's parameters of strategy ``name`` (its ``server_setting`` fields held by
    ``llm.*``) from the ``llm`` settings, for those ``params`` do not give.

    One rule everywhere: a parameter given wins (only the command line can give one: the API
    refuses them), then the setting (``config.yaml``, ``FFE__LLM__*``), then the strategy's
    default. Nothing is filled while the provider (given, else ``llm.provider``) is none, so
    a run without an LLM records the parameters it always did. The API key stays a
    ``SecretStr``: never a plain value, so never recorded or shown."""
    from ffe.decide.strategy import settings_only

    given = params or {}
    held = {p: s for p, s in settings_only(name).items() if s.startswith(LLM_SETTINGS)}
    provider = next((p for p, s in held.items() if s == "llm.provider"), None)
    if provider is None or str(given.get(provider, settings.llm.provider)) == "none":
        return {}
    found: dict[str, Any] = {}
    for param, setting in held.items():
        if param in given:
            continue
        value = _llm_setting(settings, setting.removeprefix(LLM_SETTINGS))
        if value is not None:  # unset (no base URL, no key): the strategy's default
            found[param] = value
    return found


def _llm_setting(settings: Settings, key: str) -> Any:
    from pathlib import Path

    if key == "cache_dir":
        return str(settings.llm_cache_dir())
    value = getattr(settings.llm, key)
    return str(value) if isinstance(value, Path) else value
