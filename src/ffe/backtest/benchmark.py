"""The buy-and-hold benchmark every equity curve is drawn against, in one place.

Buy and hold here is what a trader with the run's starting cash would have had by buying an
equal-weight basket of the run's symbols at the first close each has, paying the run's
costs on that one purchase (commission on the notional, the fixed commission, slippage
against the buyer), and holding it: no rebalancing, no exit, so no exit cost. The backtest's
``buy_and_hold_return`` statistic is the same basket without costs; ``with_costs`` turns
that into this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffe.domain.errors import ConfigError
from ffe.domain.market import FloatArray


@dataclass(frozen=True, slots=True)
class Costs:
    """What the one purchase of the benchmark pays: the run's own fill costs."""

    commission: float = 0.0  # a fraction of the notional
    slippage_bps: float = 0.0  # against the buyer
    fixed_commission: float = 0.0  # per symbol bought

    def __post_init__(self) -> None:
        if self.commission < 0 or self.slippage_bps < 0 or self.fixed_commission < 0:
            raise ConfigError(f"benchmark costs must not be negative, got {self}")

    @property
    def factor(self) -> float:
        """Units bought per unit of cash, relative to a purchase without costs."""
        return 1.0 / ((1.0 + self.slippage_bps / 10_000.0) * (1.0 + self.commission))

    def describe(self) -> str:
        """The costs as a reader sees them, for the chart's legend and the summary."""
        parts = [
            f"{self.commission * 10_000:g} bp commission",
            f"{self.slippage_bps:g} bp slippage",
        ]
        if self.fixed_commission:
            parts.append(f"{self.fixed_commission:g} per order")
        return ", ".join(parts) + " on the purchase"


def buy_and_hold(closes: FloatArray, cash: float, costs: Costs = Costs()) -> FloatArray:
    """The benchmark's value at each row of ``closes`` (bars by symbols, NaN where a symbol
    has no price): ``cash / n`` of each of the ``n`` symbols bought at its first known close,
    marked at its last known close since; a symbol's share is cash until its first close."""
    prices = np.asarray(closes, dtype=np.float64)
    if prices.ndim == 1:
        prices = prices[:, None]
    if prices.ndim != 2 or prices.shape[1] == 0:
        raise ConfigError(f"the benchmark needs closes as bars x symbols, got {prices.shape}")
    if not cash > 0:
        raise ConfigError(f"the benchmark needs a positive starting cash, got {cash}")
    if np.any(prices[np.isfinite(prices)] <= 0):
        raise ConfigError("the benchmark needs positive closes")
    share = cash / prices.shape[1]
    value = np.zeros(prices.shape[0])
    for column in prices.T:
        known = np.flatnonzero(np.isfinite(column))
        if known.size == 0:  # never priced: its share stays cash
            value += share
            continue
        first = int(known[0])
        spend = max(share - costs.fixed_commission, 0.0)
        units = spend * costs.factor / column[first]
        marked = _forward_filled(column) * units  # the fixed commission is spent
        value[:first] += share
        value[first:] += marked[first:]
    return value


def with_costs(frictionless_return: float, costs: Costs) -> float:
    """A buy-and-hold return without costs (the ``buy_and_hold_return`` statistic) as the
    benchmark's return, which paid ``costs`` on its purchase (the fixed commission, a per
    order amount, is left out: it depends on the cash)."""
    return (1.0 + frictionless_return) * costs.factor - 1.0


def _forward_filled(column: FloatArray) -> FloatArray:
    """Each NaN replaced by the last finite value before it (leading NaNs stay)."""
    finite = np.isfinite(column)
    index = np.where(finite, np.arange(column.size), 0)
    np.maximum.accumulate(index, out=index)
    return np.where(finite | (np.cumsum(finite) > 0), column[index], np.nan)
