"""Round trips from fills: FIFO within a position, flips, commissions, open trades marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ffe.domain.orders import Trade
from ffe.portfolio.ledger import Ledger
from ffe.runs.roundtrips import Execution, Mark, executions_of_trades, round_trips

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(day: int) -> datetime:
    return T0 + timedelta(days=day)


def fill(day: int, quantity: float, price: float, fee: float = 0.0, symbol: str = "X") -> Execution:
    return Execution(at(day), symbol, quantity, price, fee)


def test_round_trips_when_bought_then_sold_then_one_closed_trade_with_its_profit_net_of_fees():
    trips = round_trips([fill(0, 10, 100.0, 1.0), fill(3, -10, 110.0, 1.1)])

    (trip,) = trips
    assert (trip.direction, trip.is_open) == ("long", False)
    assert (trip.entry_time, trip.exit_time) == (at(0), at(3))
    assert (trip.entry_price, trip.exit_price, trip.quantity) == (100.0, 110.0, 10.0)
    assert trip.pnl == pytest.approx(100.0 - 2.1)
    assert trip.commission == pytest.approx(2.1)
    assert trip.pnl_pct == pytest.approx(97.9 / 1000.0)
    assert trip.duration_s == 3 * 86400


def test_round_trips_when_partly_closed_then_fifo_and_one_trade_until_flat():
    fills = [fill(0, 10, 100.0), fill(1, 10, 120.0), fill(2, -15, 130.0), fill(4, -5, 90.0)]

    (trip,) = round_trips(fills)

    # FIFO: 10 @100 and 5 @120 close at 130 (+300 + 50), then 5 @120 close at 90 (-150)
    assert trip.pnl == pytest.approx(200.0)
    assert trip.entry_price == pytest.approx(110.0)
    assert trip.exit_price == pytest.approx((15 * 130.0 + 5 * 90.0) / 20)
    assert (trip.quantity, trip.closed_quantity, trip.exit_time) == (20.0, 20.0, at(4))


def test_round_trips_when_a_fill_flips_long_to_short_then_closes_one_and_opens_the_other():
    fills = [fill(0, 10, 100.0, 1.0), fill(1, -30, 105.0, 3.0), fill(2, 20, 95.0, 2.0)]

    long, short = round_trips(fills)

    # the flip's fee is split by quantity: 1.0 to the closing 10, 2.0 to the opening 20
    assert (long.direction, long.exit_time, long.pnl) == ("long", at(1), pytest.approx(50.0 - 2.0))
    assert (short.direction, short.entry_time, short.quantity) == ("short", at(1), 20.0)
    assert short.pnl == pytest.approx(20 * 10.0 - 4.0)
    assert short.pnl_pct == pytest.approx(196.0 / (105.0 * 20))


def test_round_trips_when_still_open_then_marked_at_the_last_price_with_partial_exits_kept():
    fills = [fill(0, 10, 100.0, 1.0), fill(1, -4, 110.0)]

    (trip,) = round_trips(fills, {"X": Mark(at(5), 120.0)})

    assert trip.is_open
    assert trip.exit_time is None
    assert trip.realized_pnl == pytest.approx(4 * 10.0 - 0.4)
    assert trip.unrealized_pnl == pytest.approx(6 * 20.0 - 0.6)
    assert trip.pnl == pytest.approx(159.0)
    assert trip.exit_price == 110.0  # of the part closed
    assert trip.duration_s == 5 * 86400


def test_round_trips_when_open_without_a_mark_then_no_pnl_rather_than_a_wrong_one():
    (trip,) = round_trips([fill(0, -5, 100.0)])

    assert trip.is_open
    assert trip.direction == "short"
    assert trip.pnl is None
    assert trip.pnl_pct is None
    assert trip.duration_s is None


def test_round_trips_of_several_symbols_then_each_its_own_and_ordered_by_entry():
    fills = [
        fill(0, 1, 10.0, symbol="A"),
        fill(1, -2, 50.0, symbol="B"),
        fill(2, -1, 12.0, symbol="A"),
        fill(3, 2, 40.0, symbol="B"),
    ]

    trips = round_trips(fills)

    assert [(t.symbol, t.pnl) for t in trips] == [("A", 2.0), ("B", 20.0)]


def test_round_trips_when_a_fill_has_no_quantity_then_refused():
    with pytest.raises(ValueError, match="not a fill"):
        round_trips([fill(0, 0.0, 100.0)])


def test_round_trips_match_the_ledgers_closed_trades_and_open_position():
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


def test_executions_of_trades_when_only_lot_trades_are_stored_then_the_same_profit():
    trades = [
        Trade("X", at(0), at(2), 100.0, 110.0, 4.0, 38.0, 2.0),
        Trade("X", at(0), at(3), 100.0, 90.0, 6.0, -63.0, 3.0),
        Trade("X", at(3), at(4), 90.0, 80.0, -2.0, 19.0, 1.0),
    ]

    trips = round_trips(executions_of_trades(trades))

    assert [(t.direction, t.pnl) for t in trips] == [("long", -25.0), ("short", 19.0)]
    assert trips[0].exit_time == at(3)
