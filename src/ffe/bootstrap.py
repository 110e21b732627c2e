"""The composition root: settings in, wired objects out. Nothing else reads settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ffe.config import Settings

if TYPE_CHECKING:
    from ffe.backtest.engine import BacktestConfig
    from ffe.data.catalog import DataCatalog
    from ffe.execution.fill_model import FillModel
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
    """Pre-trade checks from the ``risk`` settings."""
    from ffe.risk.engine import RiskEngine

    risk = settings.risk
    return RiskEngine.from_limits(
        max_position_pct=risk.max_position_pct,
        max_gross_leverage=risk.max_gross_leverage,
        max_drawdown=risk.max_drawdown,
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
