"""Cross-sectional momentum across many symbols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ffe.decide.indicators import trailing_return
from ffe.decide.strategy import register
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray, History


@register
@dataclass(frozen=True, slots=True)
class Momentum:
    """Every ``rebalance`` bars, hold the ``top`` fraction of symbols ranked by their return
    over the last ``lookback`` bars, equally weighted; everything else goes to zero.
    """

    name: ClassVar[str] = "momentum"
    lookback: int = 126
    top: float = 0.2
    rebalance: int = 21

    def __post_init__(self) -> None:
        if self.lookback < 1 or self.rebalance < 1:
            raise StrategyError("momentum needs lookback >= 1 and rebalance >= 1")
        if not 0 < self.top <= 1:
            raise StrategyError(f"momentum needs 0 < top <= 1, got top={self.top}")

    def warmup(self) -> int:
        return self.lookback + 1

    def targets(self, history: History) -> FloatArray:
        mark = history.mark
        n_bars, n_symbols = mark.shape
        out = np.full(mark.shape, np.nan)
        # Rebalance dates are counted from the first bar with enough history, so they do
        # not depend on how long the history is.
        rows = np.arange(self.lookback, n_bars, self.rebalance)
        if rows.size == 0:
            return out
        scores = trailing_return(mark, self.lookback)[rows]
        tradable = ~np.isnan(history.close[rows]) & ~np.isnan(scores)
        scores = np.where(tradable, scores, -np.inf)
        n_hold = np.maximum(1, np.floor(tradable.sum(axis=1) * self.top)).astype(int)
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(n_symbols)[None, :], axis=1)
        chosen = (ranks < n_hold[:, None]) & tradable
        weights = np.where(chosen, 1.0 / n_hold[:, None], 0.0)
        weights[tradable.sum(axis=1) == 0] = np.nan
        out[rows] = weights
        return out
