"""Trade a binary market (a Kalshi contract) from a probability forecast.

The YES price of a binary contract reads as the market's probability that the event
happens. Given one's own forecast ``probability``, the edge is ``probability - price``: buy
YES when the edge exceeds ``margin``, sell YES (hold NO) when it is below ``-margin`` (if
``short``), and go flat once the price has come within ``margin / 2`` of the forecast.
Between those bands it keeps what it holds; it gives a target only when the position it
wants changes, so a held stake is not rebalanced as the price moves.

The forecast is a parameter here, the same for every bar: enough to backtest a view held
for a market's life. A model that updates its forecast subclasses this and overrides
``forecasts`` (one probability per bar and symbol, using only bars up to each one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ffe.decide.strategy import register
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray, History


@register
@dataclass(frozen=True, slots=True)
class BinaryEdge:
    """Hold ``stake`` of equity in YES (or NO) while the forecast beats the price by
    ``margin``."""

    name: ClassVar[str] = "binary_edge"
    probability: float = 0.5
    margin: float = 0.05
    stake: float = 0.1
    short: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.probability) and 0 <= self.probability <= 1):
            raise StrategyError(
                f"binary_edge: probability must lie in [0, 1], got {self.probability}"
            )
        if not 0 < self.margin < 1:
            raise StrategyError(f"binary_edge: margin must lie in (0, 1), got {self.margin}")
        if not 0 < self.stake <= 1:
            raise StrategyError(f"binary_edge: stake must lie in (0, 1], got {self.stake}")

    def warmup(self) -> int:
        return 1

    def forecasts(self, history: History) -> FloatArray:
        """The forecast probability of YES at every bar, per symbol (NaN: no view)."""
        return np.full(history.close.shape, self.probability)

    def targets(self, history: History) -> FloatArray:
        close = history.close
        prices = np.where((close >= 0) & (close <= 1), close, np.nan)
        edge = self.forecasts(history) - prices
        signal = np.full(close.shape, np.nan)
        signal[np.abs(edge) < self.margin / 2] = 0.0
        signal[edge > self.margin] = self.stake
        if self.short:
            signal[edge < -self.margin] = -self.stake
        # Instruct only when the wanted position changes: a target every bar would rebalance
        # the stake to equity at every price move, trading contracts back and forth.
        state = pd.DataFrame(signal).ffill().to_numpy()
        before = np.vstack([np.full((1, state.shape[1]), np.nan), state[:-1]])
        changed = ~np.isnan(state) & ((state != before) | np.isnan(before))
        return np.where(changed, state, np.nan)
