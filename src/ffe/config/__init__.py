"""Settings: environment (``FFE__SECTION__KEY``) over ``config.local.yaml`` over ``config.yaml``
over each section's defaults.

The YAML files are read from the working directory, or from the directory named by the
``FFE_CONFIG_DIR`` environment variable. Unknown keys are refused with the key's name, so a
typo never silently falls back to a default.

The sections live by concern: ``trading`` (data, backtest, risk, llm, agent, notify),
``runtime`` (logging, database, redis, compute) and ``processes`` (api, jobs, precompute);
``settings`` puts them together and reads the files, ``loading`` loads and masks them. Only
the composition root (``ffe.bootstrap``) and the entry points (the CLI) read them.
"""

from ffe.config.base import Section
from ffe.config.loading import ENV_PREFIX, load_settings, masked
from ffe.config.processes import ApiSettings, JobsSettings, JobTimeLimits, PrecomputeSettings
from ffe.config.runtime import (
    ComputeSettings,
    DatabaseSettings,
    LoggingSettings,
    RedisSettings,
    TuneSettings,
)
from ffe.config.settings import CONFIG_FILES, Settings
from ffe.config.trading import (
    AgentSettings,
    BacktestSettings,
    DataSettings,
    LlmSettings,
    NotifyEvent,
    NotifySettings,
    RiskSettings,
)

__all__ = [
    "CONFIG_FILES",
    "ENV_PREFIX",
    "AgentSettings",
    "ApiSettings",
    "BacktestSettings",
    "ComputeSettings",
    "DataSettings",
    "DatabaseSettings",
    "JobTimeLimits",
    "JobsSettings",
    "LlmSettings",
    "LoggingSettings",
    "NotifyEvent",
    "NotifySettings",
    "PrecomputeSettings",
    "RedisSettings",
    "RiskSettings",
    "Section",
    "Settings",
    "TuneSettings",
    "load_settings",
    "masked",
]
