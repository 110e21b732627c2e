"""The journal's view of positions agrees with the agent's ledger: first in, first out."""

from __future__ import annotations

import pytest

from ffe.api.queries import _positions_from_fills
from ffe.portfolio.ledger import Ledger

CASES = [
    [(10, 100.0), (10, 200.0), (-10, 150.0)],  # reduce: the oldest lot goes first
    [(5, 100.0), (-8, 110.0)],  # flip to short: the new side costs the flipping fill
    [(-4, 50.0), (-6, 60.0), (3, 55.0), (10, 40.0)],  # short, cover, flip long
    [(7, 10.0), (-7, 12.0)],  # flat: no position
]


@pytest.mark.parametrize("fills", CASES)
def test_positions_from_fills_match_the_ledger(fills):
    ledger = Ledger(1, 10_000.0)
    for bar, (quantity, price) in enumerate(fills):
        ledger.apply_fill(bar, 0, quantity, price, 0.0)

    found = _positions_from_fills([("X", q, p) for q, p in fills])

    held = ledger.position(0)
    if held == 0:
        assert found == {}
        return
    quantity, average, last = found["X"]
    assert quantity == pytest.approx(held)
    lots = ledger.lots[0]
    expected = sum(lot.quantity * lot.price for lot in lots) / sum(lot.quantity for lot in lots)
    assert average == pytest.approx(expected)
    assert last == fills[-1][1]
