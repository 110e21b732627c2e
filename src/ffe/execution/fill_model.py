"""How a simulated market order is priced: the one fill model shared by backtests and the
paper broker, so paper results can match the backtest to the cent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ffe.domain.defaults import DEFAULTS
from ffe.domain.errors import ConfigError

FillAt = Literal["next_open", "close"]


@dataclass(frozen=True, slots=True)
class FillModel:
    """Market orders fill at the next bar's open (default) or at the deciding bar's close,
    moved against the trader by ``slippage_bps``; commission is a fraction of the traded
    notional plus a fixed amount per fill."""

    at: FillAt = "next_open"
    commission: float = 0.0
    fixed_commission: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        if self.at not in ("next_open", "close"):
            raise ConfigError(f"fill_at must be 'next_open' or 'close', got {self.at!r}")
        if self.commission < 0 or self.fixed_commission < 0 or self.slippage_bps < 0:
            raise ConfigError("commission, fixed_commission and slippage_bps must be >= 0")

    @property
    def delay(self) -> int:
        """Bars between the decision and the fill."""
        return 1 if self.at == "next_open" else 0

    @property
    def cost_rate(self) -> float:
        """Proportional cost of a fill, used to size orders so they stay affordable."""
        return self.commission + self.slippage_bps * 1e-4

    def price(self, quantity: float, reference: float) -> float:
        """The execution price for ``quantity`` (signed) when the market is at ``reference``."""
        if self.slippage_bps == 0.0:
            return reference
        shift = self.slippage_bps * 1e-4
        return reference * (1.0 + shift) if quantity > 0 else reference * (1.0 - shift)

    def fee(self, quantity: float, price: float) -> float:
        """Commission paid on a fill."""
        return abs(quantity) * price * self.commission + self.fixed_commission


# The costs of ffe.domain.defaults; ``FillModel()`` alone is frictionless.
DEFAULT_FILL = FillModel(
    commission=DEFAULTS.commission,
    fixed_commission=DEFAULTS.fixed_commission,
    slippage_bps=DEFAULTS.slippage_bps,
)
