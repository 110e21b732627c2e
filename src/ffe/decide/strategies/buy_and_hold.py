"""Buy every symbol on its first bar and never sell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ffe.decide.strategy import register
from ffe.domain.market import FloatArray, History


@register
@dataclass(frozen=True, slots=True)
class BuyAndHold:
    """Equal weight in every symbol, bought on the symbol's first bar with a price."""

    name: ClassVar[str] = "buy_and_hold"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> FloatArray:
        close = history.close
        out = np.full(close.shape, np.nan)
        has_price = ~np.isnan(close)
        first = has_price & (np.cumsum(has_price, axis=0) == 1)
        out[first] = 1.0 / close.shape[1]
        return out
