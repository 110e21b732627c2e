"""Position sizing: from a target weight to a whole number of lots.

One function for the backtest and the agent, so both turn the same instruction into the same
order quantity to the last bit.
"""

from __future__ import annotations

from math import copysign, floor

from ffe.domain.market import FloatArray


def sizing_budget(equity: float, cost_rate: float) -> float:
    """Equity available to size against: never negative, and net of the proportional cost of
    the fill, so a 100 % target stays affordable after commission and slippage."""
    return max(equity, 0.0) / (1.0 + cost_rate)


def target_quantity(weight: float, budget: float, price: float, lot: float) -> float:
    """Signed quantity that holds ``weight`` of ``budget`` at ``price``, rounded toward zero
    to whole ``lot``s (a hair of tolerance keeps 0.3 / 0.1 at three lots, not two)."""
    raw = weight * budget / price
    return copysign(floor(abs(raw) / lot + 1e-9) * lot, raw)


def order_sizes(
    bar: int,
    symbols: list[int],
    weights: list[float],
    close: FloatArray,
    held: dict[int, float],
    budget: float,
    lot: float,
) -> list[tuple[int, float, float, float]]:
    """What to trade at ``bar`` so that each of ``symbols`` holds its weight of ``budget``:
    ``(symbol, quantity to trade, price, quantity held)`` for each symbol whose whole-lot
    target differs from what is held. A symbol with no price at the bar (NaN) or a price
    that is not positive is skipped: there is nothing sensible to size against. The backtest
    and the agent both call this, so an instruction becomes the same order in each."""
    sized: list[tuple[int, float, float, float]] = []
    for k in range(len(symbols)):  # an index, not zip(strict=True): cheaper compiled
        symbol = symbols[k]
        price = close.item(bar, symbol)
        if not price > 0:
            continue
        before = held.get(symbol, 0.0)
        delta = target_quantity(weights[k], budget, price, lot) - before
        if abs(delta) >= lot * 1e-9:
            sized.append((symbol, delta, price, before))
    return sized
