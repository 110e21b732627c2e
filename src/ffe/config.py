"""Settings: environment (``FFE__SECTION__KEY``) over ``config.local.yaml`` over ``config.yaml``
over the defaults below.

The YAML files are read from the working directory, or from the directory named by the
``FFE_CONFIG_DIR`` environment variable. Unknown keys are refused with the key's name, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ffe.domain.errors import ConfigError

CONFIG_FILES = ("config.yaml", "config.local.yaml")  # later files win


def _default_data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("ffe", appauthor=False)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(Section):
    dir: Path = Field(default_factory=_default_data_dir, description="where imported bars live")
    alpha_vantage_key: SecretStr | None = None


class BacktestSettings(Section):
    cash: float = Field(10_000.0, gt=0)
    commission: float = Field(0.0, ge=0, lt=1, description="fraction of traded notional")
    fixed_commission: float = Field(0.0, ge=0, description="currency per fill")
    slippage_bps: float = Field(0.0, ge=0, lt=10_000)
    fill_at: Literal["next_open", "close"] = "next_open"
    lot_size: float = Field(1.0, gt=0, description="smallest tradable quantity")
    report_dir: Path = Path("reports")


class RiskSettings(Section):
    max_position_pct: float = Field(1.0, gt=0, description="largest position, fraction of equity")
    max_gross_leverage: float = Field(1.0, gt=0)
    max_drawdown: float | None = Field(
        None, gt=0, le=1, description="halt and flatten at this drawdown; none disables"
    )
    # Live agent only (a backtest has no trading day to track); none disables each.
    max_daily_loss: float | None = Field(
        None, gt=0, le=1, description="halt and flatten for the UTC day at this loss of its equity"
    )
    max_trades_per_day: int | None = Field(None, ge=1, description="orders sent per UTC day")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="no new risk on a decision less confident than this"
    )
    max_bar_age_s: float | None = Field(
        None, gt=0, description="no new risk when the newest bar is older (seconds)"
    )
    loss_cooldown_bars: int | None = Field(
        None, ge=1, description="bars without new risk in a symbol after a losing trade in it"
    )
    broker_failures: int = Field(
        5, ge=1, description="broker failures within broker_window_s that open the circuit"
    )
    broker_window_s: float = Field(60.0, gt=0, description="seconds over which failures count")
    broker_cooldown_s: float = Field(
        30.0, ge=0, description="seconds the broker circuit stays open before one probe call"
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    json_format: bool = Field(False, alias="json")


class DatabaseSettings(Section):
    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql://user:pw@host/db; none = the SQLite "
        "file ffe.db in data.dir",
    )
    pool_size: int = Field(5, ge=1, description="PostgreSQL: connections kept open")
    max_overflow: int = Field(10, ge=0, description="PostgreSQL: extra connections under load")
    pool_timeout: float = Field(30.0, gt=0, description="seconds to wait for a free connection")
    pool_recycle: int = Field(1800, ge=-1, description="seconds before a connection is renewed")
    pgbouncer: bool = Field(
        False, description="PgBouncer in transaction mode: no pooling or prepared statements here"
    )
    busy_timeout_ms: int = Field(5000, ge=0, description="SQLite: wait this long for a lock")
    auto_upgrade: Literal["sqlite", "always", "never"] = Field(
        "sqlite", description="migrate an out-of-date schema on first use (default: SQLite only)"
    )
    backup_dir: Path | None = Field(None, description="none = backups/ in data.dir")
    backup_keep: int = Field(7, ge=1, description="backups kept by `ffe backup`")
    listen_url: SecretStr | None = Field(
        None,
        description="PostgreSQL: a direct connection (not through PgBouncer) that workers "
        "LISTEN on to wake when a job is submitted; none = the journal's url, unless pgbouncer",
    )


class LlmSettings(Section):
    provider: Literal["none", "ollama", "openai"] = Field(
        "none", description="none: no LLM voter; ollama; openai: any OpenAI-compatible server"
    )
    base_url: str | None = Field(
        None,
        description="none = http://localhost:11434 for ollama; openai needs one, e.g. "
        "http://localhost:8000/v1",
    )
    model: str | None = Field(None, description="e.g. llama3.1:8b; required unless provider none")
    api_key: SecretStr | None = Field(None, description="sent as a bearer token (openai)")
    timeout_s: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, le=10, description="on timeouts, 429 and 5xx")
    anonymize: bool = Field(True, description="hide symbol, dates and price level in prompts")
    mode: Literal["single", "debate"] = Field("single", description="debate: bull, bear, judge")
    cache_dir: Path | None = Field(None, description="none = llm-cache/ in data.dir")
    cache_mode: Literal["read_write", "read_only", "off"] = Field(
        "read_write", description="read_only replays cached answers without a server"
    )


class AgentSettings(Section):
    account: str = Field("paper", min_length=1, max_length=64, description="one agent each")
    broker: Literal["paper", "ccxt", "oanda"] = Field("paper", description="where orders go")
    live: bool = Field(
        False, description="allow real money (ccxt without sandbox, oanda live); also needs --live"
    )
    approval: Literal["auto", "manual", "on_new_asset"] = "auto"
    approval_ttl_s: float = Field(3600.0, gt=0, description="unanswered approvals expire")
    poll_interval_s: float | None = Field(
        None, gt=0, description="live data: seconds between polls; none = the bar interval"
    )
    flush_every: int = Field(256, ge=1, description="bars between journal writes at most")
    health_port: int = Field(
        0, ge=0, le=65535, description="`ffe agent run`'s /health and /metrics port; 0 = none"
    )
    health_host: str = Field("127.0.0.1", description="the address health_port listens on")
    ccxt_exchange: str = "binance"
    ccxt_api_key: SecretStr | None = None
    ccxt_secret: SecretStr | None = None
    ccxt_sandbox: bool = Field(True, description="the exchange's test network")
    ccxt_quote: str = Field("USDT", description="the account currency on the exchange")
    oanda_token: SecretStr | None = None
    oanda_account_id: str | None = None
    oanda_practice: bool = Field(True, description="practice account (no real money)")


class ApiSettings(Section):
    """The REST API, the dashboard and the main job (``ffe run``, ``ffe serve``)."""

    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 for every one")
    port: int = Field(8000, ge=1, le=65535)
    environment: Literal["development", "production"] = Field(
        "development", description="production refuses to start without a real secret_key"
    )
    secret_key: SecretStr | None = Field(
        None,
        description="signs dashboard sessions; none = a random key kept in data.dir "
        "(development only)",
    )
    first_admin_password: SecretStr | None = Field(
        None,
        description="the password `ffe run` gives the admin user it makes when there is none; "
        "unset: a random one, printed in development, written to a 0600 file in production",
    )
    session_ttl_s: int = Field(43_200, ge=60, description="dashboard login lifetime (seconds)")
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API; none: closed"
    )
    rate_limit: int = Field(1200, ge=1, description="requests per key (or address) per minute")
    login_rate_limit: int = Field(10, ge=1, description="login attempts per address per minute")
    max_body_bytes: int = Field(
        2**20, ge=1024, description="largest request body; larger ones get 413 (bytes)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="seconds a client may take to send a request's headers"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none: the peer is the client",
    )
    auth_failures_limit: int = Field(
        20, ge=1, description="failed authentications per address per window before 429"
    )
    auth_failures_window_s: float = Field(
        300.0, gt=0, description="the window failed authentications are counted in (seconds)"
    )
    login_failures_free: int = Field(
        3, ge=1, description="wrong passwords per address and user before each next waits"
    )
    login_backoff_max_s: float = Field(
        900.0, gt=0, description="the longest wait after wrong passwords (seconds)"
    )
    hash_threads: int = Field(
        2, ge=1, le=32, description="threads checking argon2 hashes (keys, passwords)"
    )
    workers: int = Field(1, ge=1, le=64, description="`ffe serve` worker processes")
    max_jobs: int = Field(
        1,
        ge=1,
        le=32,
        description="jobs an API process runs at once when it runs jobs (`ffe run`, "
        "`ffe serve --jobs`)",
    )
    # Renamed: read as precompute.symbols and precompute.interval_s (see Settings).
    analysis_symbols: list[str] | None = Field(
        None, description="deprecated: read as precompute.symbols (which wins when both are set)"
    )
    analysis_interval_s: float | None = Field(
        None, gt=0, description="deprecated: read as precompute.interval_s"
    )
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def check_proxies(cls, proxies: list[str]) -> list[str]:
        import ipaddress

        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is not an address or network: use e.g. 10.0.0.5 or 10.0.0.0/8"
                ) from None
        return [proxy.strip() for proxy in proxies]

    @field_validator("cors_origins")
    @classmethod
    def check_origins(cls, origins: list[str]) -> list[str]:
        if "*" in origins:  # with cookies allowed, "*" would let every site act as the user
            raise ValueError("list the dashboard's origins, e.g. https://desk.example; not *")
        return origins


class ComputeSettings(Section):
    """Where the parallel work of a request or a command runs, and how many processes it may
    use."""

    max_workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="processes any one pool may start (a sweep, a walk-forward run, the "
        "ensemble's forecasts, a forecast benchmark); none = the machine's cores",
    )
    executor: Literal["local", "ray"] = Field(
        "local",
        description="where sweeps, walk-forward segments and forecast benchmarks run: `local` "
        "(a process pool on this machine) or `ray` (the Ray cluster at compute.ray_address)",
    )
    ray_address: str | None = Field(
        None,
        description="the Ray cluster for executor=ray: its head's host:port (`ray start --head "
        "--port=PORT`) or ray://host:10001; every node needs this version of ffe installed",
    )


class JobTimeLimits(Section):
    """Seconds a job of each kind may run before it is stopped (and fails, saying so)."""

    backtest: float = Field(900.0, gt=0, description="a backtest job (POST /api/v1/backtests)")
    sweep: float = Field(1800.0, gt=0, description="a parameter sweep job (POST /api/v1/sweeps)")
    forecast_bench: float = Field(
        1800.0, gt=0, description="a forecast benchmark job (POST /api/v1/forecast/bench)"
    )


class JobsSettings(Section):
    """Background jobs (backtests, sweeps, forecast benchmarks): who runs them, and how."""

    time_limit_s: JobTimeLimits = JobTimeLimits()
    in_api: bool = Field(
        False, description="`ffe serve` runs jobs in its own process too (`ffe run` always does)"
    )
    concurrency: int = Field(1, ge=1, le=64, description="jobs one `ffe worker` runs at once")
    max_attempts: int = Field(
        2, ge=1, le=100, description="claims of a job whose worker died before it is failed"
    )
    poll_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="seconds between looks for queued jobs; none = 0.1 when nothing can "
        "notify a worker (SQLite without Redis), 5 when Redis or PostgreSQL can",
    )
    drain_s: float = Field(
        20.0, ge=0, description="on SIGTERM, seconds a worker waits for its running jobs"
    )
    nice: int = Field(10, ge=0, le=19, description="CPU niceness added to each job's processes")
    health_port: int = Field(
        0, ge=0, le=65535, description="`ffe worker` probes and metrics port; 0 = none"
    )
    health_host: str = Field("127.0.0.1", description="address the worker's probes listen on")
    heartbeat_s: float = Field(
        5.0, gt=0, le=60, description="seconds between a worker's heartbeats (and its jobs')"
    )
    stale_s: float = Field(
        30.0, gt=0, le=3600, description="a job or worker silent this long is taken for dead"
    )

    @field_validator("stale_s")
    @classmethod
    def check_stale(cls, stale_s: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_s", 5.0)
        if stale_s < 3 * heartbeat:
            raise ValueError(
                f"jobs.stale_s must be at least 3 heartbeats ({3 * heartbeat:g} s with "
                f"jobs.heartbeat_s at {heartbeat:g}): one late beat must not end a live job"
            )
        return stale_s


class PrecomputeSettings(Section):
    """The analysis of configured symbols, refreshed on a schedule into the shared cache
    (Redis when redis.url is set, else the journal): by ``ffe precompute``, or inside the API
    where ``in_api`` is on (``ffe run`` turns it on)."""

    symbols: list[str] = Field(
        default_factory=lambda: ["SP500"], description="analysed on the schedule"
    )
    interval_s: float = Field(300.0, gt=0, description="seconds between refreshes of a symbol")
    in_api: bool = Field(
        False,
        description="the API runs the schedule itself and analyses other symbols on request "
        "(`ffe run`, `ffe serve --precompute`); off: it only reads what `ffe precompute` caches",
    )
    health_port: int = Field(
        0, ge=0, le=65535, description="`ffe precompute`'s /health and /metrics port; 0 = none"
    )
    health_host: str = Field("127.0.0.1", description="the address health_port listens on")


class RedisSettings(Section):
    url: SecretStr | None = Field(
        None,
        description="redis://HOST:6379/0 for a shared cache, rate limits and live fan-out "
        "across workers; none = in process",
    )
    key_prefix: str = Field(
        "ffe:",
        min_length=1,
        max_length=64,
        description="begins every key and pub/sub channel: deployments sharing one Redis "
        "each take their own (pub/sub channels ignore the database number)",
    )


NotifyEvent = Literal["approval_waiting", "fill", "risk_halt", "error", "started", "stopped"]


class NotifySettings(Section):
    """Where the agent reports approvals waiting, fills, risk halts, errors, start and stop."""

    telegram_token: SecretStr | None = Field(None, description="bot token, from @BotFather")
    telegram_chat_id: str | None = Field(
        None,
        coerce_numbers_to_str=True,
        validate_default=True,
        description="the chat, group or channel to message; goes with telegram_token",
    )
    telegram_base_url: str = Field("https://api.telegram.org", description="Bot API server")
    webhook_urls: list[str] = Field(
        default_factory=list,
        description="each is sent every event as JSON; env: a JSON list",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="sign webhook requests (HMAC-SHA256 in X-FFE-Signature)"
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(get_args(NotifyEvent)), description="the kinds to send"
    )
    timeout_s: float = Field(10.0, gt=0, description="seconds per request")

    @field_validator("telegram_chat_id")
    @classmethod
    def check_telegram_pair(cls, chat_id: str | None, info: ValidationInfo) -> str | None:
        if (chat_id is None) != (info.data.get("telegram_token") is None):
            raise ValueError(
                "notify.telegram_token and notify.telegram_chat_id go together: set both, or "
                "neither for no Telegram messages"
            )
        return chat_id


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
    notify: NotifySettings = NotifySettings()
    api: ApiSettings = ApiSettings()
    jobs: JobsSettings = JobsSettings()
    redis: RedisSettings = RedisSettings()
    compute: ComputeSettings = ComputeSettings()
    precompute: PrecomputeSettings = PrecomputeSettings()

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


ENV_PREFIX = "FFE__"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation failures into a ConfigError that names the key."""
    _check_environment()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration from the environment: {exc}") from None


def _check_environment() -> None:
    """Refuse ``FFE__`` variables that name no setting: pydantic-settings would ignore them."""
    sections = Settings.model_fields
    for name in os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        field = sections.get(section)
        if field is None:
            raise ConfigError(
                f"{section}: unknown section (from environment variable {name}); "
                f"sections are {', '.join(sections)}"
            )
        known = _keys(field.annotation)
        if key and key.split("__")[0] not in known:
            raise ConfigError(
                f"{section}.{key}: unknown key (from environment variable {name}); "
                f"keys of {section} are {', '.join(sorted(known))}"
            )


def _keys(model: Any) -> set[str]:
    fields = getattr(model, "model_fields", {})
    return set(fields) | {f.alias for f in fields.values() if f.alias}


_SENSITIVE = re.compile(r"key|secret|password|token|url|database", re.IGNORECASE)


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see `ffe config show`)")
        elif _SENSITIVE.search(key):
            lines.append(f"  {key}: {error['msg']} (value hidden: it may hold a secret)")
        else:
            lines.append(f"  {key}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, with every secret replaced by ``'***'``."""
    dumped: dict[str, Any] = settings.model_dump(mode="json", by_alias=True)
    dumped["database"]["url"] = _mask_url(settings.database_url())
    if settings.data.alpha_vantage_key is not None:
        dumped["data"]["alpha_vantage_key"] = "***"
    if settings.llm.api_key is not None:
        dumped["llm"]["api_key"] = "***"
    if settings.llm.base_url is not None:
        dumped["llm"]["base_url"] = _mask_url(settings.llm.base_url)
    _mask_notify(settings.notify, dumped["notify"])
    if settings.api.secret_key is not None:
        dumped["api"]["secret_key"] = "***"
    if settings.redis.url is not None:
        dumped["redis"]["url"] = _mask_url(settings.redis.url.get_secret_value())
    if settings.database.listen_url is not None:
        dumped["database"]["listen_url"] = _mask_url(
            settings.database.listen_url.get_secret_value()
        )
    return dumped


def _mask_notify(notify: NotifySettings, shown: dict[str, Any]) -> None:
    for key in ("telegram_token", "webhook_secret"):
        if getattr(notify, key) is not None:
            shown[key] = "***"
    shown["telegram_base_url"] = _mask_url(notify.telegram_base_url)
    shown["webhook_urls"] = [_mask_webhook(url) for url in notify.webhook_urls]


def _mask_webhook(url: str) -> str:
    """Keep a webhook URL's scheme and host only: services such as Slack and Discord put the
    secret in its path."""
    scheme, sep, rest = _mask_url(url).partition("://")
    host, *tail = re.split(r"(?=[/?#])", rest, maxsplit=1)
    return f"{scheme}{sep}{host}/***" if tail and tail[0].strip("/") else f"{scheme}{sep}{rest}"


_QUERY_SECRET = re.compile(r"((?:password|passwd|pwd|secret|token)=)[^&;]*", re.IGNORECASE)


def _mask_url(url: str) -> str:
    """Hide the password of a database URL (in the authority or the query), keep the rest."""
    url = _QUERY_SECRET.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"
