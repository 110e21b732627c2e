"""``Components``: what the composition root hands the service layer and the API in place of
the settings.

Its option values (``api``, ``queue``, ``worker``, ``precompute``) are read once; its methods
build the pipeline's objects (the catalog, costs, risk limits, strategies, executors, the
journal, Redis or its stand-ins) when asked, fresh each time, so a use case never shares a
risk engine or a pool with another. It pickles, so a job's process gets it with its work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ffe.bootstrap.options import (
    ApiOptions,
    PrecomputeOptions,
    QueuePolicy,
    TuneOptions,
    WorkerOptions,
)

if TYPE_CHECKING:
    from ffe.agent.runner import Agent
    from ffe.backtest.engine import BacktestConfig
    from ffe.compute import Executor
    from ffe.config import Settings
    from ffe.data.catalog import DataCatalog
    from ffe.decide.strategy import Strategy
    from ffe.kv import Cache, CacheObserver, KvBackends
    from ffe.risk.engine import RiskEngine
    from ffe.store.database import Database


@dataclass(frozen=True, slots=True)
class Components:
    """The wired application: options read from the settings, and the pipeline's objects
    built on request. Made by ``bootstrap.components(settings)``."""

    api: ApiOptions
    queue: QueuePolicy
    worker: WorkerOptions
    precompute: PrecomputeOptions
    tune: TuneOptions
    data_dir: Path
    _settings: Settings = field(repr=False)

    def catalog(self) -> DataCatalog:
        """Imported and bundled bars, from ``data.dir``."""
        from ffe import bootstrap

        return bootstrap.data_catalog(self._settings)

    def backtest_config(self, *, cash: float | None = None, **fill: Any) -> BacktestConfig:
        """How to run a backtest: the ``backtest`` settings, then these overrides (None:
        keep the setting)."""
        from ffe import bootstrap

        return bootstrap.backtest_config(self._settings, cash=cash, **fill)

    def run_defaults(self) -> dict[str, Any]:
        """What a run takes from the ``backtest`` and ``risk`` settings when its request
        leaves it out (the settings default to ``ffe.domain.defaults``)."""
        backtest, risk = self._settings.backtest, self._settings.risk
        return {
            "cash": backtest.cash,
            "commission": backtest.commission,
            "fixed_commission": backtest.fixed_commission,
            "slippage_bps": backtest.slippage_bps,
            "fill_at": backtest.fill_at,
            "lot_size": backtest.lot_size,
            "max_position_pct": risk.max_position_pct,
            "max_gross_leverage": risk.max_gross_leverage,
            "max_drawdown": risk.max_drawdown,
        }

    def risk_engine(self) -> RiskEngine:
        """Pre-trade checks from the ``risk`` settings, new each time (it keeps state)."""
        from ffe import bootstrap

        return bootstrap.risk_engine(self._settings)

    def strategy_params(
        self, name: str, params: Mapping[str, Any], *, fill: bool = True
    ) -> dict[str, Any]:
        """``params`` with the strategy's own pool at most ``compute.max_workers`` (see
        ``bootstrap.strategy_params``)."""
        from ffe import bootstrap

        return bootstrap.strategy_params(self._settings, name, params, fill=fill)

    def llm_params(self, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Strategy ``name``'s LLM voter parameters from the ``llm`` settings, those ``params``
        do not give (see ``bootstrap.llm_params``)."""
        from ffe import bootstrap

        return bootstrap.llm_params(self._settings, name, params)

    def strategy(self, name: str, params: Mapping[str, Any]) -> Strategy:
        """Strategy ``name`` with ``params``, its own pool sized like ``strategy_params``."""
        from ffe import bootstrap

        return bootstrap.strategy(self._settings, name, params)

    def executor(self, requested: int | None = None) -> Executor:
        """Where parallel work runs (``bootstrap.executor``): a local pool of ``requested``
        processes (None or 0: as many as allowed, at most ``compute.max_workers``), or the
        Ray cluster when ``compute.executor`` is ray."""
        from ffe import bootstrap

        return bootstrap.executor(self._settings, requested)

    def database(self, url: str | None = None) -> Database:
        """The journal's database (``url``, else the configured one); not connected yet."""
        from ffe import bootstrap

        return bootstrap.database(self._settings, url)

    async def open_journal(self, url: str | None = None) -> Database:
        """The journal's database, checked to be at this code's schema."""
        from ffe import bootstrap

        return await bootstrap.open_journal(self._settings, url)

    def auto_upgrade(self, db: Database) -> bool:
        """Whether ``db``'s schema may be migrated on first use."""
        from ffe import bootstrap

        return bootstrap.auto_upgrade(self._settings, db)

    def kv_backends(self, *, observer: CacheObserver | None = None) -> KvBackends:
        """Cache, rate limiter and event bus: Redis when configured, else in this process."""
        from ffe import bootstrap

        return bootstrap.kv_backends(self._settings, observer=observer)

    def analysis_cache(
        self, db: Database, kv: KvBackends, observer: Callable[[str], None] | None = None
    ) -> Cache:
        """Where analyses are cached for every process to read."""
        from ffe import bootstrap

        return bootstrap.analysis_cache(db, kv, observer)

    def configure_logging(self) -> None:
        """Logging as ``logging.*`` says, for the process that calls this (its entry)."""
        from ffe.obs.logs import configure_logging

        chosen = self._settings.logging
        configure_logging(chosen.level, chosen.json_format)

    async def agent(
        self, strategy: str, params: dict[str, Any], symbols: list[str], **options: Any
    ) -> Agent:
        """A trading agent trading ``strategy`` on ``symbols``, its journal open; ``options``
        override the ``agent`` settings (see ``bootstrap.agent``)."""
        from ffe import bootstrap

        return await bootstrap.agent(self._settings, strategy, params, symbols, **options)
