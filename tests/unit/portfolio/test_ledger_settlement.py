"""Settling binary contracts in the ledger: the position closes at 1 or 0, cash credited."""

from __future__ import annotations

import pytest

from ffe.portfolio.ledger import Ledger


def test_settle_when_long_yes_and_result_yes_then_paid_one_per_contract() -> None:
    ledger = Ledger(1, 1000.0)
    ledger.apply_fill(0, 0, 10, 0.40, 0.17)

    settled = ledger.settle(5, 0, 1.0)

    assert settled == 10
    assert ledger.position(0) == 0
    assert ledger.cash == pytest.approx(1000 - 4.0 - 0.17 + 10.0)
    (trade,) = ledger.trades
    assert (trade.exit_bar, trade.exit_price) == (5, 1.0)
    assert trade.pnl == pytest.approx(6.0 - 0.17)
    assert ledger.cash_path(6)[-1] == pytest.approx(ledger.cash)


def test_settle_when_short_yes_and_result_yes_then_loses_one_minus_price() -> None:
    ledger = Ledger(2, 1000.0)
    ledger.apply_fill(0, 1, -4, 0.40, 0.0)

    ledger.settle(3, 1, 1.0)

    assert ledger.positions.tolist() == [0.0, 0.0]
    assert ledger.realized_pnl == pytest.approx(-4 * 0.60)
    assert ledger.cash == pytest.approx(1000 - 4 * 0.60)


def test_settle_when_nothing_held_then_nothing_changes() -> None:
    ledger = Ledger(1, 1000.0)

    assert ledger.settle(2, 0, 0.0) == 0
    assert ledger.trades == []
    assert ledger.cash == 1000.0
