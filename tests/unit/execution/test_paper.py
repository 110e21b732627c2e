"""The paper broker: the simulated broker behind the ``Broker`` protocol, shown one bar at a
time, with cash and positions of its own and state it takes back from the journal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffe.domain.errors import BrokerError
from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import AccountSnapshot
from ffe.execution.fill_model import FillModel
from ffe.execution.paper import PaperBroker

NAN = math.nan
CASH = 10_000.0

# Two symbols over four daily bars; opens and closes differ so a test can tell them apart,
# and B has no bar at all at bar 1.
OPEN = [[10.0, 100.0], [11.0, NAN], [12.0, 120.0], [13.0, 130.0]]
CLOSE = [[10.5, 100.5], [11.5, NAN], [12.5, 120.5], [13.5, 130.5]]


def bars(n: int = 4) -> MarketData:
    opens, closes = np.array(OPEN[:n]), np.array(CLOSE[:n])
    return MarketData(
        ("A", "B"),
        np.datetime64("2024-01-01", "ns") + np.arange(n) * np.timedelta64(1, "D"),
        open=opens,
        high=np.fmax(opens, closes),
        low=np.fmin(opens, closes),
        close=closes,
        volume=np.ones_like(opens),
    )


def paper(market: MarketData | None = None, **model: object) -> PaperBroker:
    return PaperBroker(market or bars(), FillModel(**model), CASH)  # type: ignore[arg-type]


async def test_submit_when_next_open_then_fills_at_next_bar_open_with_costs():
    market = bars()
    broker = paper(market, commission=0.001, slippage_bps=10.0)
    broker.on_bar(market, 0)

    sent = await broker.submit("c1", "A", 2.0, reference_price=10.5)
    same_bar = broker.on_bar(market, 0)
    filled = broker.on_bar(market, 1)

    price = 11.0 * 1.001  # bar 1's open, moved 10 bps against the buyer
    assert sent.status is OrderStatus.PENDING
    assert same_bar == []
    assert [o.client_id for o in filled] == ["c1"]
    order = filled[0]
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == 2.0
    assert order.average_price == pytest.approx(price)
    assert order.commission == pytest.approx(2.0 * price * 0.001)
    assert await broker.order("c1", "A") == order


async def test_account_when_buy_filled_then_cash_and_position_follow():
    market = bars()
    broker = paper(market, commission=0.001, fixed_commission=1.0)
    broker.on_bar(market, 0)
    await broker.submit("c1", "A", 3.0, reference_price=10.5)

    before = await broker.account()
    broker.on_bar(market, 1)
    after = await broker.account()

    fee = 3.0 * 11.0 * 0.001 + 1.0
    assert before == AccountSnapshot(CASH, {})
    assert after.cash == pytest.approx(CASH - 3.0 * 11.0 - fee)
    assert after.positions == {"A": 3.0}


async def test_account_when_position_closed_then_symbol_leaves_positions():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)
    await broker.submit("buy", "A", 2.0, reference_price=10.5)
    broker.on_bar(market, 1)
    await broker.submit("sell", "A", -2.0, reference_price=11.5)

    broker.on_bar(market, 2)
    account = await broker.account()

    assert account.positions == {}
    assert account.cash == pytest.approx(CASH - 2.0 * 11.0 + 2.0 * 12.0)


async def test_submit_when_fill_at_close_then_fills_at_deciding_bar_close():
    market = bars()
    broker = paper(market, at="close", commission=0.002)
    broker.on_bar(market, 0)

    await broker.submit("c1", "A", -4.0, reference_price=10.5)
    filled = broker.on_bar(market, 0)  # the agent looks again after deciding
    account = await broker.account()

    assert [(o.client_id, o.status) for o in filled] == [("c1", OrderStatus.FILLED)]
    assert filled[0].average_price == 10.5
    assert filled[0].commission == pytest.approx(4.0 * 10.5 * 0.002)
    assert account.positions == {"A": -4.0}
    assert account.cash == pytest.approx(CASH + 4.0 * 10.5 - 4.0 * 10.5 * 0.002)
    assert broker.on_bar(market, 1) == []  # reported once


async def test_submit_when_client_id_known_then_no_second_order():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)

    first = await broker.submit("c1", "A", 2.0, reference_price=10.5)
    again = await broker.submit("c1", "A", 2.0, reference_price=10.5)
    filled = broker.on_bar(market, 1)
    after_fill = await broker.submit("c1", "A", 2.0, reference_price=11.5)
    broker.on_bar(market, 2)

    assert again == first
    assert len(filled) == 1
    assert after_fill.status is OrderStatus.FILLED
    assert (await broker.account()).positions == {"A": 2.0}
    assert (await broker.account()).cash == pytest.approx(CASH - 2.0 * 11.0)


async def test_cancel_when_order_working_then_cancelled_and_never_filled():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)
    await broker.submit("c1", "A", 2.0, reference_price=10.5)

    cancelled = await broker.cancel("c1", "A")
    later = broker.on_bar(market, 1)

    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.reason == "cancelled"
    assert cancelled.remaining == 0.0
    assert later == []
    assert await broker.open_orders() == []
    assert await broker.account() == AccountSnapshot(CASH, {})


async def test_cancel_when_order_filled_then_unchanged():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)
    await broker.submit("c1", "A", 2.0, reference_price=10.5)
    broker.on_bar(market, 1)

    after = await broker.cancel("c1", "A")

    assert after is not None
    assert after.status is OrderStatus.FILLED
    assert (await broker.account()).positions == {"A": 2.0}


async def test_cancel_when_client_id_unknown_then_none():
    broker = paper()

    assert await broker.cancel("nope", "A") is None


async def test_open_orders_when_one_filled_one_working_then_only_working_listed():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)
    await broker.submit("early", "A", 1.0, reference_price=10.5)
    broker.on_bar(market, 1)
    await broker.submit("late", "A", 1.0, reference_price=11.5)

    working = await broker.open_orders()

    assert [o.client_id for o in working] == ["late"]
    assert working[0].remaining == 1.0


async def test_on_bar_when_no_price_at_fill_bar_then_order_rejected_with_reason():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)
    await broker.submit("c1", "B", 1.0, reference_price=100.5)

    reported = broker.on_bar(market, 1)  # B has no bar 1

    assert [o.client_id for o in reported] == ["c1"]
    assert reported[0].status is OrderStatus.REJECTED
    assert reported[0].reason == "symbol has no bar to fill at"
    assert reported[0].filled_quantity == 0.0
    assert await broker.account() == AccountSnapshot(CASH, {})
    assert broker.on_bar(market, 2) == []  # reported once, never filled later


async def test_on_bar_when_no_bar_left_to_fill_at_then_order_cancelled_with_reason():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 3)
    await broker.submit("c1", "A", 1.0, reference_price=13.5)

    reported = broker.on_bar(market, 4)  # due after the last bar the market has

    assert [(o.client_id, o.status) for o in reported] == [("c1", OrderStatus.CANCELLED)]
    assert reported[0].reason == "no bar left to fill at"
    assert await broker.account() == AccountSnapshot(CASH, {})


async def test_on_bar_when_market_grew_then_order_fills_at_new_bar_open():
    short, grown = bars(2), bars(3)
    broker = paper(short)
    broker.on_bar(short, 1)
    await broker.submit("c1", "A", 1.0, reference_price=11.5)

    filled = broker.on_bar(grown, 2)  # a polling clock hands over a longer market

    assert [(o.client_id, o.status) for o in filled] == [("c1", OrderStatus.FILLED)]
    assert filled[0].average_price == 12.0
    assert (await broker.account()).positions == {"A": 1.0}


async def test_restore_when_journal_state_given_then_cash_positions_and_orders_back():
    market = bars()
    broker = paper(market, commission=0.001)

    broker.restore(5_000.0, {"A": 3.0, "B": 0.0}, [("w1", 1, "A", 2.0)])
    working = await broker.open_orders()

    assert await broker.account() == AccountSnapshot(5_000.0, {"A": 3.0})
    assert [(o.client_id, o.symbol, o.quantity) for o in working] == [("w1", "A", 2.0)]


async def test_restore_when_order_working_then_fills_at_its_due_bar():
    market = bars()
    broker = paper(market, commission=0.001)
    broker.restore(5_000.0, {"A": 3.0}, [("w1", 1, "A", 2.0)])

    not_yet = broker.on_bar(market, 1)  # decided at bar 1: due at bar 2's open
    filled = broker.on_bar(market, 2)
    again = await broker.submit("w1", "A", 2.0, reference_price=12.5)

    assert not_yet == []
    assert [(o.client_id, o.average_price) for o in filled] == [("w1", 12.0)]
    account = await broker.account()
    assert account.positions == {"A": 5.0}
    assert account.cash == pytest.approx(5_000.0 - 2.0 * 12.0 * 1.001)
    assert again.status is OrderStatus.FILLED  # known after the restore: not sent twice


async def test_restore_when_resumed_after_due_bar_then_fills_at_due_bar_price():
    market = bars()
    broker = paper(market)
    broker.restore(5_000.0, {}, [("w1", 0, "A", 1.0)])

    filled = broker.on_bar(market, 2)  # the agent picks up after its checkpoint

    assert [(o.client_id, o.average_price) for o in filled] == [("w1", 11.0)]


async def test_submit_when_no_bar_seen_then_broker_error():
    broker = paper()

    with pytest.raises(BrokerError, match="has not seen a bar"):
        await broker.submit("c1", "A", 1.0, reference_price=10.0)


async def test_submit_when_symbol_unknown_then_broker_error_naming_it():
    market = bars()
    broker = paper(market)
    broker.on_bar(market, 0)

    with pytest.raises(BrokerError, match="'ZZZ'"):
        await broker.submit("c1", "ZZZ", 1.0, reference_price=10.0)


async def test_order_when_client_id_unknown_then_none():
    assert await paper().order("nope", "A") is None


# --- binary contracts ---------------------------------------------------------------------


async def test_settle_when_contracts_held_then_position_closed_at_result_and_orders_cancelled() -> (
    None
):
    contracts = MarketData(
        ("KX-A",),
        np.datetime64("2026-12-01", "ns") + np.arange(3) * np.timedelta64(1, "D"),
        open=[[0.40], [0.45], [0.50]],
        high=[[0.40], [0.45], [0.50]],
        low=[[0.40], [0.45], [0.50]],
        close=[[0.40], [0.45], [0.50]],
        volume=[[1.0], [1.0], [1.0]],
    )
    broker = PaperBroker(contracts, FillModel(), 100.0)
    broker.on_bar(contracts, 0)
    await broker.submit("buy", "KX-A", 10, 0.40)
    broker.on_bar(contracts, 1)  # filled at the next open, 0.45
    await broker.submit("more", "KX-A", 5, 0.45)

    settlement = broker.settle("KX-A", 1.0)

    assert settlement is not None
    assert (settlement.quantity, settlement.price, settlement.payout) == (10, 1.0, 10.0)
    assert broker.cash == pytest.approx(100 - 4.5 + 10)
    assert (await broker.account()).positions == {}
    assert await broker.open_orders() == []
    assert broker.settle("KX-A", 0.0) is None
    refused = await broker.submit("late", "KX-A", 1, 0.5)
    assert refused.status is OrderStatus.REJECTED
    assert refused.reason == "market KX-A has settled"
    assert await broker.order("late", "KX-A") == refused
    with pytest.raises(Exception, match=r"must lie in \[0, 1\]"):
        broker.settle("KX-A", 100.0)
