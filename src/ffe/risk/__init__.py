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

__all__ = [
    "AccountState",
    "MaxDrawdownHalt",
    "MaxGrossLeverage",
    "MaxPositionPct",
    "RiskCheck",
    "RiskEngine",
    "reduces_only",
]
