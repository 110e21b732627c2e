"""Getting targets from a strategy, and checking that they do not look ahead.

In batch mode the strategy is asked once for the whole history. The check then hides every
bar after a cut point and asks again: instructions for bars before the cut must not change.
A strategy that peeks at the future fails the run instead of producing flattering results.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ffe.decide.strategy import Explained, Strategy, explain
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray, History, MarketData


def batch_targets(
    strategy: Strategy,
    market: MarketData,
    targets_of: Callable[[History], FloatArray] | None = None,
) -> FloatArray:
    """Targets for every bar from one call over the whole history (``targets_of`` instead of
    ``strategy.targets`` when given, as in ``verify_point_in_time``)."""
    history = market.history()
    rows = strategy.targets(history) if targets_of is None else targets_of(history)
    return _checked(strategy, rows, market.n_bars, market)


def batch_explained(strategy: Strategy, market: MarketData) -> Explained:
    """Targets and decisions for every bar from one call over the whole history."""
    explained = explain(strategy, market.history())
    targets = _checked(strategy, explained.targets, market.n_bars, market)
    return Explained(targets, explained.decisions)


def stream_targets(strategy: Strategy, market: MarketData) -> FloatArray:
    """Targets built bar by bar, each from the history up to that bar only (slow, exact)."""
    out = np.full((market.n_bars, market.n_symbols), np.nan)
    for length in range(1, market.n_bars + 1):
        rows = _checked(strategy, strategy.targets(History(market, length)), length, market)
        out[length - 1] = rows[-1]
    return out


def verify_point_in_time(
    strategy: Strategy,
    market: MarketData,
    targets: FloatArray,
    targets_of: Callable[[History], FloatArray] | None = None,
) -> None:
    """Raise StrategyError if hiding the future changes any earlier instruction.

    ``targets_of`` computes the strategy's targets for the shortened history when the caller
    has a cheaper way to (a sweep's shared indicators); ``strategy.targets`` by default."""
    cut = _cut_point(strategy, market.n_bars)
    if cut is None:
        return
    shortened = History(market, cut)
    rows = strategy.targets(shortened) if targets_of is None else targets_of(shortened)
    hidden = _checked(strategy, rows, cut, market)
    changed = first_difference(targets[:cut], hidden)
    if changed is not None:
        first, _ = changed
        raise StrategyError(
            f"strategy {strategy.name!r} looks ahead: its instruction for bar "
            f"{market.times[first]} changed when bars from {market.times[cut]} on were "
            "hidden. A strategy may only use bars up to the one it decides on."
        )


def first_difference(a: FloatArray, b: FloatArray) -> tuple[int, int] | None:
    """Bar and symbol of the first entry where two target arrays of one shape differ (NaN
    equals NaN), in time order; None when they are the same."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return None
    bar, symbol = np.argwhere(~same)[0]
    return int(bar), int(symbol)


def _cut_point(strategy: Strategy, n_bars: int) -> int | None:
    # Early enough to be cheap, late enough that indicators have warmed up.
    warmup = max(1, strategy.warmup())
    if n_bars <= warmup + 2:
        return None
    return min(n_bars - 1, warmup + max(50, (n_bars - warmup) // 8))


def _checked(strategy: Strategy, rows: FloatArray, length: int, market: MarketData) -> FloatArray:
    expected = (length, market.n_symbols)
    array = np.asarray(rows, dtype=np.float64)
    if array.shape != expected:
        raise StrategyError(
            f"strategy {strategy.name!r} returned targets of shape {array.shape}, "
            f"expected {expected} (bars, symbols)"
        )
    if np.isinf(array).any():
        raise StrategyError(f"strategy {strategy.name!r} returned an infinite target")
    return array
