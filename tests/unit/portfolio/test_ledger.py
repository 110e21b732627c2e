"""The ledger: FIFO lots, commission attribution, paths, and accounting identities."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffe.portfolio.ledger import ClosedTrade, Ledger

CASH = 10_000.0
# Money is float64 (see the ledger's docstring): identities hold to rounding, not exactly.
MONEY_TOL = 1e-6


class F(NamedTuple):
    """A fill as the ledger takes it."""

    bar: int
    symbol: int
    quantity: float
    price: float
    fee: float = 0.0


def book(*fills: F, n_symbols: int = 1, cash: float = CASH) -> Ledger:
    ledger = Ledger(n_symbols, cash)
    for f in fills:
        ledger.apply_fill(f.bar, f.symbol, f.quantity, f.price, f.fee)
    return ledger


def open_lot_commissions(ledger: Ledger) -> float:
    return sum(lot.commission for lots in ledger.lots for lot in lots)


def unrealized(ledger: Ledger, prices: list[float]) -> float:
    return sum(
        lot.quantity * (prices[symbol] - lot.price)
        for symbol, lots in enumerate(ledger.lots)
        for lot in lots
    )


# -- lot matching ---------------------------------------------------------------------------


def test_apply_fill_when_buy_then_cash_position_and_one_open_lot():
    ledger = book(F(0, 0, 10, 100.0, 5.0))

    assert ledger.cash == CASH - 1_000.0 - 5.0
    assert ledger.position(0) == 10
    assert [(lot.quantity, lot.price, lot.commission) for lot in ledger.lots[0]] == [
        (10, 100.0, 5.0)
    ]
    assert ledger.trades == []


def test_apply_fill_when_partial_close_then_trade_for_closed_part_and_lot_keeps_rest():
    ledger = book(F(0, 0, 10, 100.0), F(3, 0, -4, 110.0))

    assert ledger.trades == [ClosedTrade(0, 0, 3, 100.0, 110.0, 4, 40.0, 0.0)]
    assert ledger.position(0) == 6
    assert [(lot.bar, lot.quantity) for lot in ledger.lots[0]] == [(0, 6)]
    assert ledger.realized_pnl == 40.0


def test_apply_fill_when_two_lots_then_oldest_closed_first():
    ledger = book(F(0, 0, 5, 100.0), F(1, 0, 5, 120.0), F(2, 0, -7, 130.0))

    assert ledger.trades == [
        ClosedTrade(0, 0, 2, 100.0, 130.0, 5, 150.0, 0.0),
        ClosedTrade(0, 1, 2, 120.0, 130.0, 2, 20.0, 0.0),
    ]
    assert [(lot.bar, lot.quantity, lot.price) for lot in ledger.lots[0]] == [(1, 3, 120.0)]


def test_apply_fill_when_reversal_then_long_closed_and_short_opened_at_same_fill():
    ledger = book(F(0, 0, 10, 100.0), F(1, 0, -15, 90.0))

    assert ledger.trades == [ClosedTrade(0, 0, 1, 100.0, 90.0, 10, -100.0, 0.0)]
    assert ledger.position(0) == -5
    assert [(lot.bar, lot.quantity, lot.price) for lot in ledger.lots[0]] == [(1, -5, 90.0)]


def test_apply_fill_when_short_covered_lower_then_profit():
    ledger = book(F(0, 0, -5, 90.0), F(2, 0, 5, 80.0))

    assert ledger.trades == [ClosedTrade(0, 0, 2, 90.0, 80.0, -5, 50.0, 0.0)]
    assert ledger.position(0) == 0
    assert ledger.held == {}


def test_apply_fill_when_commissions_then_attributed_pro_rata_to_trades():
    ledger = book(F(0, 0, 10, 100.0, 10.0), F(1, 0, -4, 110.0, 4.4))

    [trade] = ledger.trades
    assert trade.commission == pytest.approx(4.0 + 4.4)  # 4/10 of the entry fee, all the exit fee
    assert trade.pnl == pytest.approx(40.0 - 8.4)
    assert open_lot_commissions(ledger) == pytest.approx(6.0)
    assert ledger.commissions == pytest.approx(14.4)


def test_apply_fill_when_reversal_with_fee_then_fee_split_between_trade_and_new_lot():
    ledger = book(F(0, 0, 10, 100.0), F(1, 0, -15, 100.0, 3.0))

    [trade] = ledger.trades
    assert trade.commission == pytest.approx(2.0)  # 10 of the 15 units
    assert open_lot_commissions(ledger) == pytest.approx(1.0)


def test_trades_and_open_lot_commissions_when_marked_then_reconcile_with_cash():
    ledger = book(
        F(0, 0, 10, 100.0, 10.0),
        F(1, 0, -4, 110.0, 4.4),
        F(1, 1, -3, 50.0, 1.5),
        F(2, 0, -8, 105.0, 8.4),
        F(3, 1, 1, 40.0, 0.4),
        n_symbols=2,
    )
    last = [120.0, 45.0]

    trade_pnl = sum(t.pnl for t in ledger.trades)
    expected = trade_pnl + unrealized(ledger, last) - open_lot_commissions(ledger)
    assert ledger.equity(last) - CASH == pytest.approx(expected)
    assert ledger.realized_pnl == pytest.approx(trade_pnl)


def test_equity_and_gross_exposure_when_long_and_short_then_marked_at_prices():
    ledger = book(F(0, 0, 2, 10.0), F(0, 1, -3, 20.0), n_symbols=3)

    assert ledger.equity([11.0, 19.0, 99.0]) == pytest.approx(CASH - 20 + 60 + 22 - 57)
    equity, gross = ledger.marked(np.array([[11.0, 19.0, 99.0]]), 0)
    assert gross == pytest.approx(22 + 57)
    assert equity == pytest.approx(ledger.equity([11.0, 19.0, 99.0]))
    np.testing.assert_array_equal(ledger.positions, [2.0, -3.0, 0.0])


# -- paths -----------------------------------------------------------------------------------


def test_paths_when_no_fills_then_flat_and_initial_cash():
    ledger = Ledger(2, CASH)

    np.testing.assert_array_equal(ledger.position_path(3), np.zeros((3, 2)))
    np.testing.assert_array_equal(ledger.cash_path(3), [CASH] * 3)


def test_paths_when_fills_then_state_at_close_of_each_bar():
    ledger = book(
        F(1, 0, 2, 10.0, 0.5),
        F(1, 1, -1, 50.0),
        F(1, 0, 1, 11.0),  # second fill of symbol 0 in the same bar
        F(3, 0, -3, 12.0, 0.5),
        n_symbols=2,
    )

    np.testing.assert_allclose(
        ledger.position_path(5), [[0, 0], [3, -1], [3, -1], [0, -1], [0, -1]]
    )
    after_bar_1 = CASH - 20.5 + 50 - 11
    np.testing.assert_allclose(
        ledger.cash_path(5),
        [CASH, after_bar_1, after_bar_1, after_bar_1 + 35.5, after_bar_1 + 35.5],
    )


def test_apply_fill_when_fractional_lots_closed_exactly_then_no_dust_lot_nor_phantom_trade():
    ledger = book(F(0, 0, 0.1, 10.0), F(1, 0, 0.2, 10.0), F(2, 0, -0.3, 10.0))
    ledger.apply_fill(3, 0, 1.0, 10.0, 0.0)
    ledger.apply_fill(4, 0, -1.0, 12.0, 0.0)

    assert ledger.position(0) == 0
    assert list(ledger.lots[0]) == []
    assert len(ledger.trades) == 3


# -- properties ------------------------------------------------------------------------------

N_SYMBOLS = 2
quantities = st.one_of(
    st.integers(-50, 50).filter(bool).map(float),
    st.floats(0.01, 50.0, allow_nan=False).flatmap(lambda q: st.sampled_from([q, -q])),
)
prices = st.floats(1.0, 1_000.0, allow_nan=False)


@st.composite
def fill_sequences(draw: st.DrawFn, with_fees: bool = True) -> list[F]:
    """Fills on non-decreasing bars, several per bar allowed."""
    steps = draw(st.lists(st.integers(0, 2), min_size=1, max_size=30))
    fills, bar = [], 0
    for step in steps:
        bar += step
        fee = draw(st.floats(0.0, 5.0)) if with_fees else 0.0
        fills.append(
            F(bar, draw(st.integers(0, N_SYMBOLS - 1)), draw(quantities), draw(prices), fee)
        )
    return fills


def replay(fills: list[F], n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and cash at the close of each bar, by brute force."""
    positions = np.zeros((n_bars, N_SYMBOLS))
    cash = np.full(n_bars, CASH)
    for f in fills:
        positions[f.bar :, f.symbol] += f.quantity
        cash[f.bar :] -= f.quantity * f.price + f.fee
    return positions, cash


@given(fill_sequences(), st.lists(prices, min_size=N_SYMBOLS, max_size=N_SYMBOLS))
def test_ledger_when_any_fills_then_equity_is_cash_plus_marked_positions_and_paths_agree(
    fills, marks
):
    ledger = book(*fills, n_symbols=N_SYMBOLS)
    n_bars = fills[-1].bar + 1

    assert math.isclose(
        ledger.equity(marks), ledger.cash + float(ledger.positions @ marks), abs_tol=MONEY_TOL
    )
    assert math.isclose(ledger.cash_path(n_bars)[-1], ledger.cash, abs_tol=MONEY_TOL)
    np.testing.assert_allclose(ledger.position_path(n_bars)[-1], ledger.positions, atol=1e-9)
    expected_positions, expected_cash = replay(fills, n_bars)
    np.testing.assert_allclose(ledger.position_path(n_bars), expected_positions, atol=1e-9)
    np.testing.assert_allclose(ledger.cash_path(n_bars), expected_cash, atol=MONEY_TOL)
    assert math.isclose(ledger.commissions, sum(f.fee for f in fills), abs_tol=MONEY_TOL)
    assert math.isclose(ledger.realized_pnl, sum(t.pnl for t in ledger.trades), abs_tol=MONEY_TOL)


@given(quantities, prices, st.floats(100.0, 1e6))
def test_ledger_when_round_trip_at_unchanged_price_without_costs_then_cash_back(q, price, cash):
    ledger = Ledger(1, cash)

    ledger.apply_fill(0, 0, q, price, 0.0)
    ledger.apply_fill(1, 0, -q, price, 0.0)

    # float64 money: buying and selling q × price can round in the last place, hence rel_tol.
    assert math.isclose(ledger.cash, cash, rel_tol=1e-12)
    assert math.isclose(ledger.realized_pnl, 0.0, abs_tol=1e-9)
    assert ledger.held == {}
    assert [t.quantity for t in ledger.trades] == [q]


@given(fill_sequences(with_fees=False), st.lists(prices, min_size=N_SYMBOLS, max_size=N_SYMBOLS))
def test_ledger_when_no_costs_then_realized_plus_unrealized_is_equity_change(fills, last):
    ledger = book(*fills, n_symbols=N_SYMBOLS)

    change = ledger.equity(last) - CASH

    assert math.isclose(ledger.realized_pnl + unrealized(ledger, last), change, abs_tol=MONEY_TOL)


@given(fill_sequences(), st.lists(prices, min_size=N_SYMBOLS, max_size=N_SYMBOLS))
def test_ledger_when_costs_then_trade_pnl_unrealized_and_open_lot_fees_reconcile(fills, last):
    ledger = book(*fills, n_symbols=N_SYMBOLS)

    booked = sum(t.pnl for t in ledger.trades) + unrealized(ledger, last)

    assert math.isclose(
        booked - open_lot_commissions(ledger), ledger.equity(last) - CASH, abs_tol=MONEY_TOL
    )
