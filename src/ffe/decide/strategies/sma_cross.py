"""Moving-average crossover, always in the market."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ffe.decide.indicators import sma
from ffe.decide.strategy import register
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray, History


@register
@dataclass(frozen=True, slots=True)
class SmaCross:
    """Long when the fast SMA crosses above the slow one, short when it crosses below.

    Same rule as backtesting.py's canonical SmaCross example, so the two produce the same
    trades on the same bars.
    """

    name: ClassVar[str] = "sma_cross"
    fast: int = 10
    slow: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise StrategyError(
                f"sma_cross needs 1 <= fast < slow, got fast={self.fast}, slow={self.slow}"
            )

    def warmup(self) -> int:
        return self.slow

    def memory(self) -> int:
        """Bars the newest target depends on: the slow average now and a bar ago."""
        return self.slow + 1

    def targets(self, history: History) -> FloatArray:
        return self.targets_sharing(history, {})

    def rationale_for(self, history: History, column: int, target: float) -> str:
        """Why the newest bar's ``target`` for the symbol in ``column``: the two averages, the
        way they crossed and the close, in words."""
        close = history.close[-(self.slow + 1) :, column]
        fast, slow = float(np.mean(close[-self.fast :])), float(np.mean(close[-self.slow :]))
        way, side = ("above", "long") if target > 0 else ("below", "short")
        return (
            f"SMA({self.fast}) {fast:,.2f} crossed {way} SMA({self.slow}) {slow:,.2f} at the "
            f"close of {float(close[-1]):,.2f}: go {side}, {target:+.0%} of equity"
        )

    def targets_sharing(self, history: History, shared: dict[Hashable, FloatArray]) -> FloatArray:
        """``targets``, with each window's SMA taken from ``shared`` or added to it."""
        close = history.close
        fast, slow = _sma(shared, close, self.fast), _sma(shared, close, self.slow)
        # crossed_above(fast, slow) and crossed_above(slow, fast), from one comparison each
        # way: a sweep runs this for every point.
        below, above = fast < slow, fast > slow
        out = np.full(close.shape, np.nan)
        later = out[1:]  # a view: a cross is decided on the second of its two bars
        later[below[:-1] & above[1:]] = 1.0
        later[above[:-1] & below[1:]] = -1.0
        return out


def _sma(shared: dict[Hashable, FloatArray], close: FloatArray, window: int) -> FloatArray:
    key = ("sma_cross.sma", window)
    found = shared.get(key)
    if found is None:
        found = shared[key] = sma(close, window)
    return found
