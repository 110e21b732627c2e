"""Sections of what is traded and how: bars, backtest costs, risk limits, the LLM voter, the
agent and its notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from ffe.config.base import Section
from ffe.domain.defaults import DEFAULTS


def _default_data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("ffe", appauthor=False)


_URL = r"^https?://[^/\s]+(/\S*)?$"
HttpUrl = Annotated[str, Field(pattern=_URL)]


def _default_ccxt_urls() -> dict[str, str]:
    return {"binance": "https://api.binance.com/api/v3", "coinbase": "https://api.coinbase.com"}


class DataSettings(Section):
    dir: Path = Field(default_factory=_default_data_dir, description="where imported bars live")
    alpha_vantage_key: SecretStr | None = Field(None, description="for `--source alphavantage`")
    alpha_vantage_url: HttpUrl = Field(
        "https://www.alphavantage.co/query", description="Alpha Vantage's query endpoint"
    )
    alpha_vantage_full: bool = Field(
        False, description="ask outputsize=full (a premium key); the free tier: latest 100 bars"
    )
    ccxt_urls: dict[str, HttpUrl] = Field(
        default_factory=_default_ccxt_urls,
        description="public REST base of ccxt exchanges, by ccxt id (Binance: the URL ending in "
        "/api/v3); exchanges not named use ccxt's own",
    )
    oanda_url: HttpUrl = Field(
        "https://api-fxpractice.oanda.com",
        description="OANDA v20 REST server for candles (live accounts: https://api-fxtrade.oanda.com)",
    )
    oanda_token: SecretStr | None = Field(
        None, description="for `--source oanda`; none = agent.oanda_token"
    )
    feed_timeout_s: float = Field(10.0, gt=0, description="seconds per request to a feed")
    feed_retries: int = Field(
        4, ge=0, le=10, description="retries of a feed request on rate limits, 5xx and timeouts"
    )
    feed_backoff_s: float = Field(1.0, ge=0, description="first wait before a retry; doubles")
    feed_max_backoff_s: float = Field(60.0, ge=0, description="longest wait before a retry")


class StrategiesSettings(Section):
    files: list[Path] = Field(
        default_factory=list,
        description="Python files whose strategy classes are offered by their `name` (to the "
        "API too, which never takes a path); relative to the working directory",
    )


class BacktestSettings(Section):
    cash: float = Field(DEFAULTS.cash, gt=0)
    commission: float = Field(
        DEFAULTS.commission, ge=0, lt=1, description="fraction of traded notional"
    )
    fixed_commission: float = Field(
        DEFAULTS.fixed_commission, ge=0, description="currency per fill"
    )
    slippage_bps: float = Field(DEFAULTS.slippage_bps, ge=0, lt=10_000)
    fill_at: Literal["next_open", "close"] = "next_open"
    lot_size: float = Field(
        DEFAULTS.lot_size,
        gt=0,
        description="smallest tradable quantity (1: whole units; binary contracts always are)",
    )
    report_dir: Path = Path("reports")


class RiskSettings(Section):
    max_position_pct: float = Field(
        DEFAULTS.max_position_pct, gt=0, description="largest position, fraction of equity"
    )
    max_gross_leverage: float = Field(DEFAULTS.max_gross_leverage, gt=0)
    max_drawdown: float | None = Field(
        DEFAULTS.max_drawdown,
        gt=0,
        le=1,
        description="halt and flatten at this drawdown; none disables",
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
    # Binary contracts (Kalshi): counted in contracts, none disables each.
    max_contracts_per_market: int | None = Field(
        None, ge=1, description="largest position in one binary market, in contracts"
    )
    max_contracts_per_event: int | None = Field(
        None, ge=1, description="largest sum of positions over one event's markets, in contracts"
    )
    broker_failures: int = Field(
        5, ge=1, description="broker failures within broker_window_s that open the circuit"
    )
    broker_window_s: float = Field(60.0, gt=0, description="seconds over which failures count")
    broker_cooldown_s: float = Field(
        30.0, ge=0, description="seconds the broker circuit stays open before one probe call"
    )

    @field_validator(
        "max_drawdown",
        "max_daily_loss",
        "max_trades_per_day",
        "min_confidence",
        "max_bar_age_s",
        "loss_cooldown_bars",
        "max_contracts_per_market",
        "max_contracts_per_event",
        mode="before",
    )
    @classmethod
    def _none_disables(cls, value: object) -> object:
        # An environment variable is a string: "none" (or "null") turns a limit off there
        # too, as null does in YAML; the drawdown halt is on by default.
        if isinstance(value, str) and value.strip().lower() in ("none", "null"):
            return None
        return value


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
    broker: Literal["paper", "ccxt", "oanda", "kalshi"] = Field(
        "paper", description="where orders go"
    )
    live: bool = Field(
        False,
        description="allow real money (ccxt without sandbox, oanda live, kalshi production); "
        "also needs --live",
    )
    approval: Literal["auto", "manual", "on_new_asset"] = "auto"
    approval_ttl_s: float = Field(3600.0, gt=0, description="unanswered approvals expire")
    poll_interval_s: float | None = Field(
        None, gt=0, description="live data: seconds between polls; none = the bar interval"
    )
    flush_every: int = Field(256, ge=1, description="bars between journal writes at most")
    window_bars: int = Field(
        500,
        ge=2,
        description="live feeds: the bars fetched before a new run's first live bar, and the "
        "history a strategy that says how far back it looks is asked about (at least 3x that)",
    )
    stale_bars: float = Field(
        2.0,
        gt=0,
        description="live feeds: a bar arriving more than this many bar intervals after it "
        "closed is history (stepped, not traded); the feed is stale once the next bar is as late",
    )
    calendar: str | None = Field(
        None,
        description="live feeds: the venue's exchange_calendars code (XNYS, XLON); none = by "
        "feed: ccxt around the clock, oanda 24x5, alphavantage XNYS",
    )
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
    oanda_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="none = OANDA's own address for the environment; another v20 REST server "
        "(a local one in tests)",
    )


class KalshiSettings(Section):
    """Kalshi prediction markets: the broker (``agent.broker: kalshi``) and its account."""

    environment: Literal["demo", "production"] = Field(
        "demo", description="production trades real money: also needs agent.live and --live"
    )
    base_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="none = Kalshi's address for the environment; another trade API v2 server "
        "(a local one in tests), including its /trade-api/v2 path",
    )
    data_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="where market data is read (public, no key); none = Kalshi's production "
        "API, whose markets are the real ones",
    )
    key_id: str | None = Field(None, description="the API key's id, from the account page")
    private_key_path: Path | None = Field(
        None,
        validate_default=True,
        description="the API key's PEM private key file (never sent; it signs requests)",
    )
    time_in_force: Literal["immediate_or_cancel", "good_till_canceled", "fill_or_kill"] = (
        "immediate_or_cancel"
    )
    price_bound: float = Field(
        0.05, ge=0, lt=1, description="how far past the reference YES price an order may fill"
    )
    reads_per_s: float = Field(20.0, ge=0, description="request rate for reads; 0 = unlimited")
    writes_per_s: float = Field(10.0, ge=0, description="request rate for orders and cancels")

    @field_validator("private_key_path")
    @classmethod
    def check_key_pair(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if (path is None) != (info.data.get("key_id") is None):
            raise ValueError(
                "kalshi.key_id and kalshi.private_key_path go together: set both (the API key "
                "id and its .key file), or neither"
            )
        return path


NotifyEvent = Literal[
    "approval_waiting", "fill", "risk_halt", "error", "started", "stopped", "feed"
]


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
