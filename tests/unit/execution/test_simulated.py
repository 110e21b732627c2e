"""The simulated broker against small hand-written bars."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution.fill_model import FillModel
from ffe.execution.simulated import SimFill, SimulatedBroker

NAN = math.nan

# Two symbols over four daily bars; opens and closes differ so a test can tell them apart.
OPEN = [[10.0, 100.0], [11.0, NAN], [12.0, 120.0], [13.0, 130.0]]
CLOSE = [[10.5, 100.5], [11.5, NAN], [12.5, 120.5], [13.5, 130.5]]


def bars() -> MarketData:
    opens, closes = np.array(OPEN), np.array(CLOSE)
    return MarketData(
        ("A", "B"),
        np.datetime64("2024-01-01", "ns") + np.arange(4) * np.timedelta64(1, "D"),
        open=opens,
        high=np.fmax(opens, closes),
        low=np.fmin(opens, closes),
        close=closes,
        volume=np.ones_like(opens),
    )


def broker(**model: object) -> SimulatedBroker:
    return SimulatedBroker(bars(), FillModel(**model))  # type: ignore[arg-type]


class Recorder:
    """Collects fills in the order the broker hands them out."""

    def __init__(self) -> None:
        self.fills: list[SimFill] = []

    def __call__(self, fill: SimFill) -> None:
        self.fills.append(fill)


def test_fill_due_when_next_open_then_fills_at_next_bar_open():
    sim, got = broker(), Recorder()
    order = sim.submit("c1", bar=0, symbol=0, quantity=2.0)

    sim.fill_due(1, got)

    assert got.fills == [SimFill("c1", 1, 0, 2.0, 11.0, 0.0)]
    assert order.status is OrderStatus.FILLED


def test_fill_due_when_next_open_and_called_at_decision_bar_then_nothing_yet():
    sim, got = broker(), Recorder()
    order = sim.submit("c1", bar=0, symbol=0, quantity=2.0)

    sim.fill_due(0, got)

    assert got.fills == []
    assert order.status is OrderStatus.PENDING


def test_fill_due_when_close_then_fills_at_same_bar_close():
    sim, got = broker(at="close"), Recorder()
    sim.submit("c1", bar=2, symbol=1, quantity=-1.0)

    sim.fill_due(2, got)

    assert got.fills == [SimFill("c1", 2, 1, -1.0, 120.5, 0.0)]


@pytest.mark.parametrize(("quantity", "price"), [(5.0, 12.0 * 1.002), (-5.0, 12.0 * 0.998)])
def test_fill_when_slippage_then_price_moves_against_trader(quantity, price):
    sim, got = broker(slippage_bps=20), Recorder()
    sim.submit("c1", bar=1, symbol=0, quantity=quantity)

    sim.fill_due(2, got)

    assert got.fills[0].price == pytest.approx(price)


def test_fill_when_commission_then_fraction_of_slipped_notional_plus_fixed():
    sim, got = broker(commission=0.01, fixed_commission=2.0, slippage_bps=100), Recorder()
    sim.submit("c1", bar=1, symbol=0, quantity=-5.0)

    sim.fill_due(2, got)

    price = 12.0 * 0.99
    assert got.fills[0].price == pytest.approx(price)
    assert got.fills[0].commission == pytest.approx(5 * price * 0.01 + 2.0)


def test_fill_when_fill_bar_has_no_price_then_rejected_with_reason():
    sim, got = broker(), Recorder()
    order = sim.submit("c1", bar=0, symbol=1, quantity=1.0)  # B has no bar 1

    sim.fill_due(1, got)

    assert got.fills == []
    assert order.status is OrderStatus.REJECTED
    assert order.reason == "symbol has no bar to fill at"
    assert sim.next_fill_bar() is None


def test_fill_when_order_on_last_bar_then_cancelled_no_bar_left():
    sim, got = broker(), Recorder()
    order = sim.submit("c1", bar=3, symbol=0, quantity=1.0)

    sim.fill_due(3, got)
    assert order.status is OrderStatus.PENDING  # not due before the bar that does not exist
    sim.fill_due(4, got)

    assert got.fills == []
    assert order.status is OrderStatus.CANCELLED
    assert order.reason == "no bar left to fill at"


def test_cancel_all_when_orders_pending_then_cancelled_with_reason_and_none_left():
    sim, got = broker(), Recorder()
    filled = sim.submit("c1", bar=0, symbol=0, quantity=1.0)
    sim.fill_due(1, got)
    waiting = [sim.submit("c2", 2, 0, 1.0), sim.submit("c3", 2, 1, -1.0)]

    cancelled = sim.cancel_all("end of data")

    assert cancelled == waiting
    assert all(o.status is OrderStatus.CANCELLED for o in waiting)
    assert all(o.reason == "end of data" for o in waiting)
    assert filled.status is OrderStatus.FILLED
    assert sim.next_fill_bar() is None
    sim.fill_due(3, got)
    assert [f.client_id for f in got.fills] == ["c1"]


def test_next_fill_bar_when_orders_pending_then_earliest_due_bar():
    sim = broker()
    assert sim.next_fill_bar() is None

    # Orders arrive in time order, as the backtest loop submits them.
    sim.submit("early", bar=0, symbol=0, quantity=1.0)
    sim.submit("late", bar=2, symbol=0, quantity=1.0)

    assert sim.next_fill_bar() == 1


def test_next_fill_bar_when_fill_at_close_then_decision_bar():
    sim = broker(at="close")

    sim.submit("c1", bar=2, symbol=0, quantity=1.0)

    assert sim.next_fill_bar() == 2


def test_fill_due_when_only_some_orders_due_then_rest_wait_and_next_bar_updates():
    sim, got = broker(), Recorder()
    sim.submit("early", bar=0, symbol=0, quantity=1.0)
    late = sim.submit("late", bar=2, symbol=0, quantity=1.0)

    sim.fill_due(1, got)

    assert [f.client_id for f in got.fills] == ["early"]
    assert late.status is OrderStatus.PENDING
    assert sim.next_fill_bar() == 3


def test_fill_due_when_several_orders_due_then_fills_in_submission_order():
    sim, got = broker(), Recorder()
    sim.submit("first", bar=1, symbol=1, quantity=1.0)
    sim.submit("second", bar=1, symbol=0, quantity=-1.0)
    sim.submit("third", bar=1, symbol=0, quantity=2.0)

    sim.fill_due(2, got)

    assert [f.client_id for f in got.fills] == ["first", "second", "third"]
    assert [f.price for f in got.fills] == [120.0, 12.0, 12.0]


def test_fill_due_when_called_after_several_due_bars_then_each_fills_at_its_own_bar():
    sim, got = broker(), Recorder()
    sim.submit("first", bar=0, symbol=0, quantity=1.0)
    sim.submit("second", bar=1, symbol=0, quantity=1.0)

    sim.fill_due(2, got)

    assert [(f.client_id, f.bar, f.price) for f in got.fills] == [
        ("first", 1, 11.0),
        ("second", 2, 12.0),
    ]
    assert sim.next_fill_bar() is None


def test_orders_when_submitted_then_all_kept_with_final_status():
    sim, got = broker(), Recorder()
    sim.submit("no-price", bar=0, symbol=1, quantity=1.0)
    sim.submit("ok", bar=1, symbol=0, quantity=1.0)

    sim.fill_due(2, got)

    assert [(o.client_id, o.status) for o in sim.orders] == [
        ("no-price", OrderStatus.REJECTED),
        ("ok", OrderStatus.FILLED),
    ]
