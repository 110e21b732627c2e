"""Position sizing: from a target weight to a whole number of lots.

One function for the backtest and the agent, so both turn the same instruction into the same
order quantity to the last bit.
"""

from __future__ import annotations

from math import copysign, floor


def sizing_budget(equity: float, cost_rate: float) -> float:
    """Equity available to size against: never negative, and net of the proportional cost of
    the fill, so a 100 % target stays affordable after commission and slippage."""
    return max(equity, 0.0) / (1.0 + cost_rate)


def target_quantity(weight: float, budget: float, price: float, lot: float) -> float:
    """Signed quantity that holds ``weight`` of ``budget`` at ``price``, rounded toward zero
    to whole ``lot``s (a hair of tolerance keeps 0.3 / 0.1 at three lots, not two)."""
    raw = weight * budget / price
    return copysign(floor(abs(raw) / lot + 1e-9) * lot, raw)
