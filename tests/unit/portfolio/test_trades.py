"""Round trips from fills (ffe.portfolio.trades)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ffe.portfolio.trades import RoundTrip, TradeFill, round_trips

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def at(day: int) -> datetime:
    return T0 + timedelta(days=day)


def buy(qty: float, price: float, day: int, fee: float = 0.0, symbol: str = "SP500") -> TradeFill:
    return TradeFill(symbol, "buy", qty, price, fee, at(day))


def sell(qty: float, price: float, day: int, fee: float = 0.0, symbol: str = "SP500") -> TradeFill:
    return TradeFill(symbol, "sell", qty, price, fee, at(day))


def test_round_trips_when_bought_then_sold_then_one_closed_long_with_net_pnl() -> None:
    (trade,) = round_trips([buy(2, 100, 0, fee=1.0), sell(2, 110, 3, fee=1.0)])

    assert (trade.side, trade.quantity, trade.open) == ("long", 2, False)
    assert (trade.entry_price, trade.exit_price) == (100, 110)
    assert trade.fees == pytest.approx(2.0)
    assert trade.pnl == pytest.approx(20.0 - 2.0)
    assert trade.return_pct == pytest.approx(18.0 / 200.0)
    assert trade.duration() == timedelta(days=3)


def test_round_trips_when_two_entries_and_one_exit_then_fifo_matched() -> None:
    trades = round_trips([buy(1, 100, 0), buy(1, 120, 1), sell(1, 130, 2)])

    closed, still = trades
    assert (closed.entry_price, closed.pnl, closed.open) == (100, 30, False)
    assert (still.entry_price, still.open, still.pnl) == (120, True, None)


def test_round_trips_when_exit_is_partial_then_lot_and_entry_fee_are_split() -> None:
    closed, still = round_trips([buy(4, 50, 0, fee=4.0), sell(1, 60, 1, fee=0.5)], {"SP500": 55})

    assert closed.quantity == 1
    assert closed.fees == pytest.approx(1.0 + 0.5)
    assert closed.pnl == pytest.approx(10 - 1.5)
    assert still.quantity == 3
    assert still.fees == pytest.approx(3.0)
    assert still.pnl == pytest.approx(3 * 5 - 3.0)  # unrealised at the mark, net of its fee
    assert still.exit_price == 55
    assert still.exit_time is None


def test_round_trips_when_fill_crosses_zero_then_short_opens_with_the_rest() -> None:
    closed, short = round_trips([buy(1, 100, 0), sell(3, 90, 1, fee=3.0)], {"SP500": 80})

    assert (closed.side, closed.pnl) == ("long", pytest.approx(-10 - 1.0))
    assert (short.side, short.quantity, short.entry_price) == ("short", 2, 90)
    assert short.pnl == pytest.approx(2 * 10 - 2.0)  # a short gains as the price falls


def test_round_trips_when_symbols_interleave_then_each_matched_on_its_own() -> None:
    fills = [buy(1, 10, 0, symbol="A"), buy(1, 20, 1, symbol="B"), sell(1, 12, 2, symbol="A")]

    trades = round_trips(fills)

    assert [(t.symbol, t.open) for t in trades] == [("A", False), ("B", True)]


def test_open_trade_duration_when_as_of_given_then_runs_to_it() -> None:
    (trade,) = round_trips([buy(1, 10, 0)])

    assert trade.duration() is None
    assert trade.duration(at(5)) == timedelta(days=5)
    assert isinstance(trade, RoundTrip)
    assert trade.return_pct is None


def test_signed_fill_when_quantity_negative_then_a_sell() -> None:
    fill = TradeFill.signed("A", -2.5, 10.0, 0.1, at(0))

    assert (fill.side, fill.quantity) == ("sell", 2.5)


@pytest.mark.parametrize(
    ("side", "qty", "price", "message"),
    [("hold", 1, 1, "side"), ("buy", 0, 1, "quantity"), ("buy", 1, -1, "price")],
)
def test_trade_fill_when_input_bad_then_refused_saying_what(
    side: str, qty: float, price: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TradeFill("A", side, qty, price, 0.0, at(0))  # type: ignore[arg-type]
