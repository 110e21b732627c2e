"""Settings: environment (``FFE__SECTION__KEY``) over ``config.local.yaml`` over ``config.yaml``
over the defaults of each section (``ffe.config.trading``, ``runtime``, ``processes``).

The YAML files are read from the working directory, or from the directory named by the
``FFE_CONFIG_DIR`` environment variable. Unknown keys are refused with the key's name, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ffe.config.processes import ApiSettings, JobsSettings, PrecomputeSettings
from ffe.config.runtime import (
    ComputeSettings,
    DatabaseSettings,
    LoggingSettings,
    RedisSettings,
    TuneSettings,
)
from ffe.config.trading import (
    AgentSettings,
    BacktestSettings,
    DataSettings,
    KalshiSettings,
    LlmSettings,
    NotifySettings,
    RiskSettings,
    StrategiesSettings,
)
from ffe.domain.errors import ConfigError

CONFIG_FILES = ("config.yaml", "config.local.yaml")  # later files win


class Settings(BaseSettings):
    """The effective configuration of one process."""

    model_config = SettingsConfigDict(
        env_prefix="FFE__",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    data: DataSettings = DataSettings()
    backtest: BacktestSettings = BacktestSettings()
    risk: RiskSettings = RiskSettings()
    logging: LoggingSettings = LoggingSettings()
    database: DatabaseSettings = DatabaseSettings()
    llm: LlmSettings = LlmSettings()
    agent: AgentSettings = AgentSettings()
    kalshi: KalshiSettings = KalshiSettings()
    notify: NotifySettings = NotifySettings()
    api: ApiSettings = ApiSettings()
    jobs: JobsSettings = JobsSettings()
    redis: RedisSettings = RedisSettings()
    compute: ComputeSettings = ComputeSettings()
    precompute: PrecomputeSettings = PrecomputeSettings()
    tune: TuneSettings = TuneSettings()
    strategies: StrategiesSettings = StrategiesSettings()

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        """Read ``api.analysis_symbols`` and ``api.analysis_interval_s`` (their names before
        ``ffe precompute``) as ``precompute.symbols`` and ``precompute.interval_s``; the new
        keys win where both are set."""
        if not isinstance(data, dict) or not isinstance(data.get("api"), dict):
            return data
        api, section = data["api"], data.get("precompute") or {}
        moved = {new: api[old] for old, new in _RENAMED.items() if api.get(old) is not None}
        if not moved or not isinstance(section, dict):
            return data
        kept = {key: value for key, value in api.items() if key not in _RENAMED}
        return {**data, "api": kept, "precompute": {**moved, **section}}

    def llm_cache_dir(self) -> Path:
        """Where LLM answers are cached: ``llm.cache_dir``, else ``llm-cache`` in data.dir."""
        return self.llm.cache_dir or self.data.dir / "llm-cache"

    def database_url(self) -> str:
        """The configured database URL, or the SQLite file ``ffe.db`` in the data directory."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{(self.data.dir / 'ffe.db').as_posix()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [
            InitSettingsSource(settings_cls, _read_yaml(path)) for path in reversed(_config_paths())
        ]
        return (init_settings, env_settings, *files)


_RENAMED = {"analysis_symbols": "symbols", "analysis_interval_s": "interval_s"}


def _config_paths() -> list[Path]:
    base = Path(os.environ.get("FFE_CONFIG_DIR", "."))
    return [base / name for name in CONFIG_FILES]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded
