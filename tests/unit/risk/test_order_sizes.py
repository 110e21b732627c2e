"""The sizing loop the backtest and the agent share: weights to whole-lot order quantities,
reductions first, closing orders, and marks with no NaN."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ffe.domain.market import finite_marks
from ffe.domain.orders import OrderIntent
from ffe.portfolio.ledger import Ledger
from ffe.risk.engine import AccountState, reductions_first
from ffe.risk.sizing import order_sizes

T = datetime(2024, 1, 2, tzinfo=UTC)


def test_order_sizes_trades_the_difference_in_whole_lots_and_skips_unpriced_symbols() -> None:
    close = np.array([[100.0, np.nan, 50.0, 0.0, 10.0]])
    held = {0: 3.0, 4: 50.0}
    sized = order_sizes(0, [0, 1, 2, 3, 4], [0.5, 0.5, -0.25, 0.1, 0.05], close, held, 1000.0, 1.0)
    # 0: target 5 lots, holds 3 -> +2; 1: no price; 2: -5; 3: price 0; 4: target 5, holds 50
    assert sized == [(0, 2.0, 100.0, 3.0), (2, -5.0, 50.0, 0.0), (4, -45.0, 10.0, 50.0)]


def test_order_sizes_leaves_a_symbol_already_at_its_target() -> None:
    close = np.array([[100.0]])
    assert order_sizes(0, [0], [0.5], close, {0: 5.0}, 1000.0, 1.0) == []
    assert order_sizes(0, [0], [0.5], close, {0: 5.0}, 1000.0, 0.5) == []
    [(symbol, delta, price, before)] = order_sizes(0, [0], [0.53], close, {0: 5.0}, 1000.0, 0.1)
    assert (symbol, price, before) == (0, 100.0, 5.0)
    assert delta == pytest.approx(0.3)


def test_reductions_first_moves_shrinking_orders_ahead_and_keeps_order_otherwise() -> None:
    intents = [
        OrderIntent("a", T, "A", 5.0, 1.0),  # opens
        OrderIntent("b", T, "B", -2.0, 1.0),  # shrinks B from 4 to 2
        OrderIntent("c", T, "C", -6.0, 1.0),  # flips C from 4 to -2: not a reduction
        OrderIntent("d", T, "D", 1.0, 1.0),  # shrinks D from -3 to -2
    ]
    account = AccountState(100.0, 100.0, {"B": 4.0, "C": 4.0, "D": -3.0}, 0.0, False)
    reductions_first(intents, account)
    assert [i.client_id for i in intents] == ["b", "d", "a", "c"]


def test_closing_orders_close_every_open_position_by_symbol() -> None:
    ledger = Ledger(3, 1000.0)
    ledger.apply_fill(0, 2, 4.0, 10.0, 0.0)
    ledger.apply_fill(0, 0, -1.5, 20.0, 0.0)
    assert ledger.closing_orders() == [(0, 1.5), (2, -4.0)]
    assert Ledger(2, 1.0).closing_orders() == []


def test_finite_marks_copies_only_when_a_column_starts_late() -> None:
    clean = np.array([[1.0, 2.0], [1.5, 2.5]])
    assert finite_marks(clean) is clean
    late = np.array([[1.0, np.nan], [1.5, 2.5]])
    fixed = finite_marks(late)
    assert fixed is not late
    assert fixed.tolist() == [[1.0, 0.0], [1.5, 2.5]]
    assert np.isnan(late[0, 1])  # the market's own marks are left as they are
