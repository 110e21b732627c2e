"""The composition root: settings in, wired objects out. Nothing else reads settings.

The functions here take ``Settings`` and are for the entry points (the CLI, the job of a
uvicorn factory) and the agent's wiring; the service layer and the API get ``Components``
(``components(settings)``), which holds the option values they use and builds the rest on
request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ffe.bootstrap.components import Components
from ffe.bootstrap.llm import llm_params
from ffe.bootstrap.options import (
    ApiOptions,
    PrecomputeOptions,
    QueuePolicy,
    TuneOptions,
    WakeOptions,
    WorkerOptions,
    api_options,
    precompute_options,
    queue_policy,
    tune_options,
    worker_options,
)
from ffe.config import Settings

__all__ = [
    "ApiOptions",
    "Components",
    "PrecomputeOptions",
    "QueuePolicy",
    "TuneOptions",
    "WakeOptions",
    "WorkerOptions",
    "api_options",
    "llm_params",
    "precompute_options",
    "queue_policy",
    "tune_options",
    "worker_options",
]

if TYPE_CHECKING:
    from ffe.agent.notify import Notifications
    from ffe.agent.runner import Agent
    from ffe.backtest.engine import BacktestConfig
    from ffe.compute import Executor
    from ffe.data.catalog import DataCatalog
    from ffe.decide.strategy import Strategy
    from ffe.execution.fill_model import FillModel
    from ffe.kv import Cache, CacheObserver, KvBackends
    from ffe.kv.events import Publisher
    from ffe.risk.breaker import CircuitBreaker
    from ffe.risk.engine import RiskEngine
    from ffe.store.database import Database


def data_catalog(settings: Settings) -> DataCatalog:
    """Imported and bundled bars, from the configured data directory."""
    from ffe.data import DataCatalog

    return DataCatalog(settings.data.dir)


def fill_model(settings: Settings, **overrides: Any) -> FillModel:
    """The fill model from ``backtest`` settings, with command-line overrides (None = keep)."""
    from ffe.execution.fill_model import FillModel

    values: dict[str, Any] = {
        "at": settings.backtest.fill_at,
        "commission": settings.backtest.commission,
        "fixed_commission": settings.backtest.fixed_commission,
        "slippage_bps": settings.backtest.slippage_bps,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FillModel(**values)


def risk_engine(settings: Settings) -> RiskEngine:
    """Pre-trade checks from the ``risk`` settings. The emergency stop is always there; it
    and the other checks that read the live agent's RiskContext allow everything without one
    (a backtest)."""
    from ffe.risk import rules
    from ffe.risk.engine import MaxGrossLeverage, MaxPositionPct, RiskCheck, RiskEngine

    risk = settings.risk
    # First denial wins: the halts go first so their reason is the one reported.
    checks: list[RiskCheck] = [rules.EmergencyHalt()]
    if risk.max_daily_loss is not None:
        checks.append(rules.MaxDailyLoss(risk.max_daily_loss))
    if risk.max_bar_age_s is not None:
        checks.append(rules.StaleData(risk.max_bar_age_s))
    if risk.max_trades_per_day is not None:
        checks.append(rules.MaxTradesPerDay(risk.max_trades_per_day))
    if risk.loss_cooldown_bars is not None:
        checks.append(rules.LossCooldown(risk.loss_cooldown_bars))
    if risk.min_confidence is not None:
        checks.append(rules.MinConfidence(risk.min_confidence))
    checks += [MaxPositionPct(risk.max_position_pct), MaxGrossLeverage(risk.max_gross_leverage)]
    if risk.max_contracts_per_market is not None or risk.max_contracts_per_event is not None:
        from ffe.risk.contracts import ContractLimits

        checks.append(ContractLimits(risk.max_contracts_per_market, risk.max_contracts_per_event))
    return RiskEngine(checks, max_drawdown=risk.max_drawdown)


def broker_breaker(settings: Settings, *, name: str = "broker") -> CircuitBreaker:
    """The circuit breaker around broker calls, from the ``risk.broker_*`` settings."""
    from ffe.risk.breaker import CircuitBreaker

    risk = settings.risk
    return CircuitBreaker(
        failure_threshold=risk.broker_failures,
        window_s=risk.broker_window_s,
        cooldown_s=risk.broker_cooldown_s,
        name=name,
    )


def backtest_config(
    settings: Settings, *, cash: float | None = None, **fill_overrides: Any
) -> BacktestConfig:
    """How to run a backtest: settings, then command-line overrides."""
    from ffe.backtest.engine import BacktestConfig

    return BacktestConfig(
        cash=settings.backtest.cash if cash is None else cash,
        fill=fill_model(settings, **fill_overrides),
        lot_size=settings.backtest.lot_size,
    )


POOL_SETTING = "compute.max_workers"  # the setting that sizes a strategy's own pool


def max_workers(settings: Settings) -> int:
    """The most processes one pool may start: ``compute.max_workers``, else the cores."""
    import os

    return settings.compute.max_workers or os.cpu_count() or 1


def pool_size(settings: Settings, requested: int | None = None) -> int:
    """Processes for a pool asked for ``requested`` (None or 0: as many as allowed), never
    more than ``max_workers``."""
    cap = max_workers(settings)
    return cap if requested is None or requested <= 0 else min(requested, cap)


def executor(settings: Settings, requested: int | None = None) -> Executor:
    """Where parallel work (sweep points, walk-forward segments, forecast blocks) runs: a
    local process pool of ``pool_size(settings, requested)`` workers, or the Ray cluster of
    ``compute.ray_address`` when ``compute.executor`` is ray (``requested``, when above 0,
    caps its tasks at once; ``compute.max_workers`` sizes local pools only)."""
    from ffe.compute import LocalExecutor

    if settings.compute.executor == "ray":
        return _ray_executor(settings.compute.ray_address, requested)
    return LocalExecutor(pool_size(settings, requested))


def _ray_executor(address: str | None, requested: int | None) -> Executor:
    """Connected now, so a wrong address or a node without ffe fails as a ConfigError
    before any work is handed out."""
    from ffe.compute.ray_executor import ClusterError, RayExecutor
    from ffe.domain.errors import ConfigError

    if not address:
        raise ConfigError(
            "compute.executor is ray but no cluster is given: set compute.ray_address "
            "(FFE__COMPUTE__RAY_ADDRESS, or --ray-address) to the host:port of a head started "
            "with `ray start --head --port=PORT`"
        )
    try:
        return RayExecutor(address, requested or None).connect()
    except (ImportError, ConnectionError, ClusterError) as exc:
        raise ConfigError(str(exc)) from None


def strategy_params(
    settings: Settings, name: str, params: Mapping[str, Any], *, fill: bool = True
) -> dict[str, Any]:
    """``params`` of strategy ``name`` with the size of the strategy's own pool at most
    ``compute.max_workers`` (0: the cap); with ``fill``, the cap where ``params`` do not say,
    and the LLM voter's parameters from the ``llm`` settings (``llm_params``)."""
    from ffe.decide.strategy import make_strategy

    found = dict(params)
    for param in _pool_params(name):
        if param in found:  # converted as the strategy would ("8" -> 8), or refused
            asked = getattr(make_strategy(name, {param: found[param]}), param)
            found[param] = pool_size(settings, asked)
        elif fill:
            found[param] = max_workers(settings)
    if fill:
        found.update(llm_params(settings, name, found))
    return found


def strategy(settings: Settings, name: str, params: Mapping[str, Any]) -> Strategy:
    """Strategy ``name`` with ``params``, its own pool sized by ``strategy_params``."""
    from ffe.decide.strategy import make_strategy

    return make_strategy(name, strategy_params(settings, name, params))


def _pool_params(name: str) -> list[str]:
    from ffe.decide.strategy import settings_only

    return [param for param, setting in settings_only(name).items() if setting == POOL_SETTING]


def database(settings: Settings, url: str | None = None) -> Database:
    """The journal's database: ``url``, else the configured one, else SQLite in the data
    directory. Nothing connects until it is first used."""
    from ffe.store.database import Database, DatabaseOptions

    db = settings.database
    options = DatabaseOptions(
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout,
        pool_recycle=db.pool_recycle,
        pgbouncer=db.pgbouncer,
        busy_timeout_ms=db.busy_timeout_ms,
    )
    return Database(url or settings.database_url(), options)


def analysis_cache(
    db: Database, kv: KvBackends, observer: Callable[[str], None] | None = None
) -> Cache:
    """Where analyses are cached for every process to read (``ffe precompute`` writes, the
    API reads): Redis when ``redis.url`` is set (``kv.cache``), else the journal's
    ``cache_entries`` table, which the processes on one machine share. ``observer`` counts
    the journal's hits and misses (Redis's are counted by ``kv``)."""
    if kv.redis_url is not None:
        return kv.cache
    from ffe.store.cache import JournalCache

    return JournalCache(db, observer=observer)


def auto_upgrade(settings: Settings, db: Database) -> bool:
    """Whether ``db``'s schema may be migrated on first use (``database.auto_upgrade``)."""
    mode = settings.database.auto_upgrade
    return mode == "always" or (mode == "sqlite" and db.is_sqlite)


async def open_journal(settings: Settings, url: str | None = None) -> Database:
    """The journal's database, checked to be at the schema this code expects."""
    from ffe.store.migrate import ensure_schema

    db = database(settings, url)
    try:
        await ensure_schema(db, auto_upgrade=auto_upgrade(settings, db))
    except BaseException:
        await db.dispose()
        raise
    return db


def kv_backends(settings: Settings, *, observer: CacheObserver | None = None) -> KvBackends:
    """Cache, rate limiter and event bus: on Redis when ``redis.url`` is set, else in this
    process. Nothing connects until first used."""
    from ffe.kv import make_backends

    redis = settings.redis
    url = None if redis.url is None else redis.url.get_secret_value()
    return make_backends(url, observer=observer, key_prefix=redis.key_prefix)


def agent_publisher(kv: KvBackends, *, in_process: bool) -> Publisher:
    """Where an agent reports its decisions, fills, equity and state: inside the API
    (``in_process``), that process's event bus, which its stream reads (and every worker's,
    through Redis when configured); in a process of its own, Redis pub/sub when configured,
    the channel every API worker's stream reads; else nowhere, and the API reads what the
    agent journaled instead (``ffe.service.journal_tail``)."""
    from ffe.kv.events import DiscardingPublisher, publisher

    if in_process or kv.redis_url is not None:
        return publisher(kv.bus)
    return DiscardingPublisher()


async def agent(
    settings: Settings,
    strategy: str,
    params: dict[str, Any],
    symbols: list[str],
    *,
    replay: bool = True,
    start: str | None = None,
    end: str | None = None,
    account: str | None = None,
    approval: str | None = None,
    cash: float | None = None,
    commission: float | None = None,
    speed: float | None = None,
    fresh: bool = False,
    live: bool = False,
    feed: str | None = None,
    timeframe: str | None = None,
    api_url: str | None = None,
) -> Agent:
    """A trading agent wired from settings and command-line overrides, its journal open.
    With ``feed`` (like ``ccxt:binance``) it trades ``timeframe`` bars as they close there
    (``api_url``: another address of the venue's API); otherwise stored bars."""
    from ffe.agent.runner import Agent, RunSpec
    from ffe.agent.step import AgentConfig
    from ffe.agent.stepper import stepper_for
    from ffe.bootstrap.clocks import agent_clock
    from ffe.bootstrap.venues import recorded_contracts
    from ffe.decide.plugins import recorded
    from ffe.decide.strategy import make_strategy, plain_params
    from ffe.domain.defaults import lot_for

    chosen = settings.agent
    real_money = _real_money(settings)
    if real_money and not (chosen.live and live):
        from ffe.domain.errors import ConfigError

        raise ConfigError(
            f"agent.broker={chosen.broker} without its sandbox/practice mode trades real money: "
            "set agent.live: true in the config AND pass --live to do that on purpose"
        )
    made = make_strategy(strategy, strategy_params(settings, strategy, params))
    clock, market = agent_clock(
        settings,
        symbols,
        feed=feed,
        timeframe=timeframe,
        api_url=api_url,
        replay=replay,
        speed=speed,
        start=start,
        end=end,
        warmup=made.warmup(),
    )
    contracts = recorded_contracts(settings.data.dir, symbols)
    whole = bool(contracts) or chosen.broker == "kalshi"  # binary contracts: whole units
    config = AgentConfig(
        account=account or chosen.account,
        cash=settings.backtest.cash if cash is None else cash,
        fill=fill_model(settings, commission=commission),
        lot_size=lot_for(settings.backtest.lot_size, whole=whole),
        approval=(approval or chosen.approval),  # type: ignore[arg-type]
        approval_ttl_s=chosen.approval_ttl_s,
        flush_every=chosen.flush_every,
        contracts=contracts,
    )
    broker = agent_broker(settings, market, config, live=live)
    window = None if feed is None else chosen.window_bars  # replays ask the whole history
    kind = "live" if chosen.broker != "paper" else "paper"
    coerced = plain_params(made, params)  # as typed, like a backtest records; no secret
    spec = RunSpec(
        strategy=made.name,
        params=coerced,
        kind=kind,
        broker=chosen.broker,
        fresh=fresh,
        source=recorded(made),
    )
    db = await open_journal(settings)
    return Agent(
        db,
        market,
        made,
        stepper_for(made, window),
        broker,
        risk_engine(settings),
        clock,
        config,
        spec,
        _notifications(settings),
    )


def _real_money(settings: Settings) -> bool:
    chosen = settings.agent
    return (
        (chosen.broker == "ccxt" and not chosen.ccxt_sandbox)
        or (chosen.broker == "oanda" and not chosen.oanda_practice)
        or (chosen.broker == "kalshi" and settings.kalshi.environment == "production")
    )


def notifications(settings: Settings) -> Notifications:
    """The agent's notifiers from the ``notify`` settings: Telegram when a token and chat id are
    set, one webhook per URL, each sent only ``notify.events``. None set: it notifies nobody."""
    from ffe.agent.notify import Notifications, Notifier, TelegramNotifier, WebhookNotifier

    notify = settings.notify
    kinds = frozenset(notify.events)
    chosen: list[Notifier] = []
    if notify.telegram_token is not None and notify.telegram_chat_id is not None:
        token, chat = notify.telegram_token.get_secret_value(), notify.telegram_chat_id
        base = notify.telegram_base_url
        chosen.append(TelegramNotifier(token, chat, base, notify.timeout_s, kinds=kinds))
    secret = None if notify.webhook_secret is None else notify.webhook_secret.get_secret_value()
    for number, url in enumerate(notify.webhook_urls, start=1):
        name = f"webhook-{number}"
        chosen.append(WebhookNotifier(url, secret, notify.timeout_s, kinds=kinds, name=name))
    return Notifications(chosen, timeout_s=notify.timeout_s)


def _notifications(settings: Settings) -> Any:
    """The configured notifiers, or None when none is configured."""
    notify = getattr(settings, "notify", None)
    if notify is None or not (notify.telegram_token or notify.webhook_urls):
        return None
    return notifications(settings)


def agent_broker(settings: Settings, market: Any, config: Any, *, live: bool = False) -> Any:
    """The broker ``agent.broker`` names: the paper broker, or a venue behind a circuit
    breaker. Venues start in their sandbox / practice mode."""
    from ffe.domain.errors import ConfigError

    chosen = settings.agent
    if chosen.broker == "paper":
        from ffe.execution.paper import PaperBroker

        return PaperBroker(market, config.fill, config.cash)
    from ffe.agent.guarded import GuardedBroker

    allow_live = chosen.live and live
    if chosen.broker == "ccxt":
        from ffe.execution.ccxt_broker import CcxtBroker

        if chosen.ccxt_api_key is None or chosen.ccxt_secret is None:
            raise ConfigError("agent.broker=ccxt needs agent.ccxt_api_key and agent.ccxt_secret")
        venue: Any = CcxtBroker(
            chosen.ccxt_exchange,
            api_key=chosen.ccxt_api_key.get_secret_value(),
            secret=chosen.ccxt_secret.get_secret_value(),
            sandbox=chosen.ccxt_sandbox,
            live=allow_live,
            symbols=tuple(market.symbols),
            quote=chosen.ccxt_quote,
        )
    elif chosen.broker == "kalshi":
        from ffe.bootstrap.venues import kalshi_broker

        venue = kalshi_broker(settings, allow_live=allow_live)
    else:
        from ffe.execution.oanda_broker import OandaBroker

        if chosen.oanda_token is None or chosen.oanda_account_id is None:
            raise ConfigError(
                "agent.broker=oanda needs agent.oanda_token and agent.oanda_account_id"
            )
        practice = chosen.oanda_practice
        venue = OandaBroker(
            chosen.oanda_token.get_secret_value(),
            chosen.oanda_account_id,
            environment="practice" if practice else "live",
            live=allow_live and not practice,
            base_url=chosen.oanda_url,
        )
    return GuardedBroker(venue, broker_breaker(settings, name=chosen.broker))


def components(settings: Settings) -> Components:
    """Everything the service layer and the API are handed instead of ``settings``."""
    from ffe.decide.strategy import offer_files

    offer_files(settings.strategies.files)  # offered by name, to the API and job workers
    return Components(
        api=api_options(settings),
        queue=queue_policy(settings),
        worker=worker_options(settings),
        precompute=precompute_options(settings),
        tune=tune_options(settings),
        data_dir=settings.data.dir,
        _settings=settings,
    )


def load(**overrides: Any) -> Components:
    """The components of this process's settings (``load_settings(**overrides)``): for an
    entry point that has nothing to override on the command line (a uvicorn factory)."""
    from ffe.config import load_settings

    return components(load_settings(**overrides))
