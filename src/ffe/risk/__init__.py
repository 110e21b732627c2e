"""Risk checks returning verdicts."""

from ffe.risk.engine import (
    AccountState,
    MaxDrawdownHalt,
    MaxGrossLeverage,
    MaxPositionPct,
    RiskCheck,
    RiskEngine,
    reduces_only,
)
from ffe.risk.rules import (
    EmergencyHalt,
    LossCooldown,
    MaxDailyLoss,
    MaxTradesPerDay,
    MinConfidence,
    RiskContext,
    StaleData,
    daily_loss_tripped,
)

__all__ = [
    "AccountState",
    "EmergencyHalt",
    "LossCooldown",
    "MaxDailyLoss",
    "MaxDrawdownHalt",
    "MaxGrossLeverage",
    "MaxPositionPct",
    "MaxTradesPerDay",
    "MinConfidence",
    "RiskCheck",
    "RiskContext",
    "RiskEngine",
    "StaleData",
    "daily_loss_tripped",
    "reduces_only",
]
