"""Which strategy parameters a caller may set, and which only the server's settings set."""

from __future__ import annotations

import pytest

from ffe.decide.strategy import (
    available,
    caller_parameters,
    parameters,
    refuse_settings_only,
    settings_only,
)
from ffe.domain import StrategyError

# The parameters that reach outside the process: a host to call (and what is sent to it, how
# often and how long to wait), a folder to write, a number of processes.
HOST_PATH_OR_BUDGET = {
    "ensemble": {
        "workers": "compute.max_workers",
        "llm_provider": "llm.provider",
        "llm_url": "llm.base_url",
        "llm_model": "llm.model",
        "llm_mode": "llm.mode",
        "llm_cache": "llm.cache_dir",
        "llm_cache_mode": "llm.cache_mode",
        "llm_timeout": "llm.timeout_s",
        "llm_retries": "llm.max_retries",
        "llm_anonymize": "llm.anonymize",
        "llm_api_key": "llm.api_key",
    },
}


@pytest.mark.parametrize("name", available())
def test_split_when_any_strategy_then_every_parameter_is_in_exactly_one_part(name: str) -> None:
    caller, server = set(caller_parameters(name)), set(settings_only(name))

    assert caller | server == set(parameters(name))
    assert not caller & server


@pytest.mark.parametrize("name", available())
def test_settings_only_when_any_strategy_then_exactly_the_host_path_and_budget_ones(
    name: str,
) -> None:
    assert settings_only(name) == HOST_PATH_OR_BUDGET.get(name, {})


def test_settings_only_when_setting_named_then_it_is_a_real_setting() -> None:
    from ffe.config import Settings

    settings = Settings()
    for held in HOST_PATH_OR_BUDGET.values():
        for setting in held.values():
            section, key = setting.split(".")
            assert key in type(getattr(settings, section)).model_fields, setting


def test_caller_parameters_when_ensemble_then_the_decision_ones_with_defaults() -> None:
    caller = caller_parameters("ensemble")

    assert caller["window"] == 500
    assert caller["threshold"] == 0.55
    assert not any(name == "workers" or name.startswith("llm_") for name in caller)


def test_refuse_settings_only_when_one_named_then_error_names_it_and_its_setting() -> None:
    with pytest.raises(StrategyError, match=r"llm_url is a server setting \(llm.base_url\)"):
        refuse_settings_only("ensemble", ["window", "llm_url"])


def test_refuse_settings_only_when_only_caller_parameters_then_nothing_raised() -> None:
    refuse_settings_only("ensemble", ["window", "threshold"])
    refuse_settings_only("sma_cross", ["fast", "slow"])
