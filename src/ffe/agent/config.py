"""How an agent trades one account: ``AgentConfig`` (kept apart from the step that reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ffe.domain.contracts import BinaryContract
from ffe.domain.defaults import DEFAULTS
from ffe.domain.errors import ConfigError
from ffe.execution.fill_model import DEFAULT_FILL, FillModel

ApprovalMode = Literal["auto", "manual", "on_new_asset"]
APPROVAL_MODES = ("auto", "manual", "on_new_asset")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How an agent trades one account. Risk limits live in the RiskEngine beside it."""

    account: str = "paper"
    cash: float = DEFAULTS.cash
    fill: FillModel = field(default_factory=lambda: DEFAULT_FILL)
    lot_size: float = DEFAULTS.lot_size
    approval: ApprovalMode = "auto"
    approval_ttl_s: float = 3600.0
    flush_every: int = 256  # bars between journal writes when no order forces one
    flush_interval_s: float = 2.0
    command_poll_s: float = 0.25
    contracts: tuple[BinaryContract, ...] = ()  # binary markets the paper broker settles

    def __post_init__(self) -> None:
        if self.approval not in APPROVAL_MODES:
            raise ConfigError(f"approval must be one of {', '.join(APPROVAL_MODES)}")
        if not self.cash > 0 or not self.lot_size > 0:
            raise ConfigError("cash and lot_size must be positive")
        if not self.account or len(self.account) > 64:
            raise ConfigError("the account name must be 1 to 64 characters")
