"""Trades from fills (ffe.portfolio.trades): round trips from flat to flat, FIFO within one,
partial exits folded in, flips, commissions, open trips marked, bad fills refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from ffe.domain.orders import Trade
from ffe.portfolio.ledger import Ledger
from ffe.portfolio.trades import Execution, Mark, executions_of_trades, round_trips

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(day: int) -> datetime:
    return T0 + timedelta(days=day)


def fill(day: int, quantity: float, price: float, fee: float = 0.0, symbol: str = "X") -> Execution:
    return Execution(at(day), symbol, quantity, price, fee)


def test_round_trips_when_bought_then_sold_then_one_closed_trade_with_its_profit_net_of_fees() -> (
    None
):
    trips = round_trips([fill(0, 10, 100.0, 1.0), fill(3, -10, 110.0, 1.1)])

    (trip,) = trips
    assert (trip.direction, trip.is_open) == ("long", False)
    assert (trip.entry_time, trip.exit_time) == (at(0), at(3))
    assert (trip.entry_price, trip.exit_price, trip.quantity) == (100.0, 110.0, 10.0)
    assert trip.pnl == pytest.approx(100.0 - 2.1)
    assert trip.commission == pytest.approx(2.1)
    assert trip.pnl_pct == pytest.approx(97.9 / 1000.0)
    assert trip.duration_s == 3 * 86400


def test_round_trips_when_partly_closed_then_fifo_and_one_trade_until_flat() -> None:
    fills = [fill(0, 10, 100.0), fill(1, 10, 120.0), fill(2, -15, 130.0), fill(4, -5, 90.0)]

    (trip,) = round_trips(fills)

    # FIFO: 10 @100 and 5 @120 close at 130 (+300 + 50), then 5 @120 close at 90 (-150)
    assert trip.pnl == pytest.approx(200.0)
    assert trip.entry_price == pytest.approx(110.0)
    assert trip.exit_price == pytest.approx((15 * 130.0 + 5 * 90.0) / 20)
    assert (trip.quantity, trip.closed_quantity, trip.exit_time) == (20.0, 20.0, at(4))


def test_round_trips_when_a_fill_flips_long_to_short_then_closes_one_and_opens_the_other() -> None:
    fills = [fill(0, 10, 100.0, 1.0), fill(1, -30, 105.0, 3.0), fill(2, 20, 95.0, 2.0)]

    long, short = round_trips(fills)

    # the flip's fee is split by quantity: 1.0 to the closing 10, 2.0 to the opening 20
    assert (long.direction, long.exit_time, long.pnl) == ("long", at(1), pytest.approx(50.0 - 2.0))
    assert (short.direction, short.entry_time, short.quantity) == ("short", at(1), 20.0)
    assert short.pnl == pytest.approx(20 * 10.0 - 4.0)
    assert short.pnl_pct == pytest.approx(196.0 / (105.0 * 20))


def test_round_trips_when_still_open_then_marked_at_the_last_price_with_partial_exits_kept() -> (
    None
):
    fills = [fill(0, 10, 100.0, 1.0), fill(1, -4, 110.0)]

    (trip,) = round_trips(fills, {"X": Mark(at(5), 120.0)})

    assert trip.is_open
    assert trip.exit_time is None
    assert trip.realized_pnl == pytest.approx(4 * 10.0 - 0.4)
    assert trip.unrealized_pnl == pytest.approx(6 * 20.0 - 0.6)
    assert trip.pnl == pytest.approx(159.0)
    assert trip.exit_price == 110.0  # of the part closed
    assert trip.duration_s == 5 * 86400


def test_round_trips_when_open_without_a_mark_then_no_pnl_rather_than_a_wrong_one() -> None:
    (trip,) = round_trips([fill(0, -5, 100.0)])

    assert trip.is_open
    assert trip.direction == "short"
    assert trip.pnl is None
    assert trip.pnl_pct is None
    assert trip.duration_s is None


def test_round_trips_of_several_symbols_then_each_its_own_and_ordered_by_entry() -> None:
    fills = [
        fill(0, 1, 10.0, symbol="A"),
        fill(1, -2, 50.0, symbol="B"),
        fill(2, -1, 12.0, symbol="A"),
        fill(3, 2, 40.0, symbol="B"),
    ]

    trips = round_trips(fills)

    assert [(t.symbol, t.pnl) for t in trips] == [("A", 2.0), ("B", 20.0)]


@pytest.mark.parametrize(
    ("quantity", "price", "fee"),
    [(0.0, 100.0, 0.0), (1.0, -1.0, 0.0), (1.0, math.nan, 0.0), (1.0, math.inf, 0.0),
     (-1.0, 100.0, math.nan)],
)  # fmt: skip
def test_execution_when_not_a_fill_then_refused_saying_what(
    quantity: float, price: float, fee: float
) -> None:
    with pytest.raises(ValueError, match=r"not a fill: X .* a (price of 0 or more|number)"):
        fill(0, quantity, price, fee)


def test_execution_when_price_zero_or_a_rebate_then_a_fill() -> None:
    # a binary contract settles at 0; a maker rebate is a negative commission
    (trip,) = round_trips([fill(0, 2, 0.4, fee=-0.01), fill(1, -2, 0.0)])

    assert trip.pnl == pytest.approx(-0.8 + 0.01)


def test_round_trips_when_scaled_in_and_partly_out_then_one_open_trip_with_the_exit_realised() -> (
    None
):
    (trip,) = round_trips([fill(0, 1, 100.0), fill(1, 1, 120.0), fill(2, -1, 130.0)])

    # FIFO: the exit closes the lot bought at 100, the one at 120 stays open (no mark)
    assert (trip.is_open, trip.quantity, trip.closed_quantity) == (True, 2.0, 1.0)
    assert (trip.entry_price, trip.exit_price) == (110.0, 130.0)
    assert trip.realized_pnl == pytest.approx(30.0)
    assert (trip.unrealized_pnl, trip.pnl) == (None, None)


def test_round_trips_when_exit_is_partial_then_the_entry_fee_is_split_by_quantity() -> None:
    fills = [fill(0, 4, 50.0, fee=4.0), fill(1, -1, 60.0, fee=0.5)]

    (trip,) = round_trips(fills, {"X": Mark(at(2), 55.0)})

    assert trip.realized_pnl == pytest.approx(10.0 - 1.0 - 0.5)  # a quarter of the entry fee
    assert trip.unrealized_pnl == pytest.approx(3 * 5.0 - 3.0)  # the rest of it
    assert trip.commission == pytest.approx(4.5)
    assert trip.pnl == pytest.approx(8.5 + 12.0)
    assert (trip.exit_price, trip.mark) == (60.0, Mark(at(2), 55.0))


def test_round_trips_when_a_fill_crosses_zero_then_the_short_gains_as_the_price_falls() -> None:
    fills = [fill(0, 1, 100.0), fill(1, -3, 90.0, fee=3.0)]

    long, short = round_trips(fills, {"X": Mark(at(2), 80.0)})

    assert (long.direction, long.pnl) == ("long", pytest.approx(-10.0 - 1.0))
    assert (short.direction, short.quantity, short.entry_price) == ("short", 2.0, 90.0)
    assert short.pnl == pytest.approx(2 * 10.0 - 2.0)
    assert short.exit_price is None  # nothing of it closed yet


def test_round_trips_when_symbols_interleave_then_each_matched_on_its_own() -> None:
    fills = [
        fill(0, 1, 10.0, symbol="A"),
        fill(1, 1, 20.0, symbol="B"),
        fill(2, -1, 12.0, symbol="A"),
    ]

    trips = round_trips(fills)

    assert [(t.symbol, t.is_open, t.pnl) for t in trips] == [("A", False, 2.0), ("B", True, None)]


def test_duration_when_open_and_the_mark_time_unknown_then_runs_to_as_of() -> None:
    (trip,) = round_trips([fill(0, 1, 10.0)], {"X": Mark(None, 11.0)})

    assert trip.pnl == pytest.approx(1.0)
    assert trip.duration() is None
    assert trip.duration_s is None
    assert trip.duration(at(5)) == timedelta(days=5)


def test_round_trips_match_the_ledgers_closed_trades_and_open_position() -> None:
    ledger = Ledger(1, 10_000.0)
    booked = [(0, 3, 10.0), (2, 2, 11.0), (3, -4, 12.0), (5, -3, 9.0), (7, 3, 8.0)]
    for bar, quantity, price in booked:
        ledger.apply_fill(bar, 0, quantity, price, abs(quantity) * price * 0.001)
    executions = [Execution(at(b), "X", q, p, c) for b, _, q, p, c in ledger.fills()]

    trips = round_trips(executions, {"X": Mark(at(8), 8.5)})

    # long 5, partly closed, flipped short 2, flipped long 1 (still open)
    assert [(t.direction, t.is_open) for t in trips] == [
        ("long", False), ("short", False), ("long", True),
    ]  # fmt: skip
    assert sum(t.realized_pnl for t in trips) == pytest.approx(sum(t.pnl for t in ledger.trades))
    assert trips[-1].quantity - trips[-1].closed_quantity == pytest.approx(ledger.position(0))


def test_executions_of_trades_when_only_lot_trades_are_stored_then_the_same_profit() -> None:
    trades = [
        Trade("X", at(0), at(2), 100.0, 110.0, 4.0, 38.0, 2.0),
        Trade("X", at(0), at(3), 100.0, 90.0, 6.0, -63.0, 3.0),
        Trade("X", at(3), at(4), 90.0, 80.0, -2.0, 19.0, 1.0),
    ]

    trips = round_trips(executions_of_trades(trades))

    assert [(t.direction, t.pnl) for t in trips] == [("long", -25.0), ("short", 19.0)]
    assert trips[0].exit_time == at(3)
