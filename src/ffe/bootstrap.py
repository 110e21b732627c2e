"""The composition root: settings in, wired objects out. Nothing else reads settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ffe.config import Settings

if TYPE_CHECKING:
    from ffe.backtest.engine import BacktestConfig
    from ffe.data.catalog import DataCatalog
    from ffe.execution.fill_model import FillModel
    from ffe.risk.engine import RiskEngine


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
