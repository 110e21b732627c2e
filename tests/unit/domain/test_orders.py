"""Sides, intents and closed trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ffe.domain.orders import Approved, Denied, Fill, OrderIntent, Side, Trade

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def trade(entry: float, exit_: float, quantity: float) -> Trade:
    return Trade("X", T0, T0 + timedelta(days=1), entry, exit_, quantity, pnl=0.0)


@pytest.mark.parametrize(
    ("quantity", "side"), [(3.0, Side.BUY), (0.001, Side.BUY), (-2.0, Side.SELL)]
)
def test_side_of_when_signed_quantity_then_buy_for_positive_sell_for_negative(quantity, side):
    assert Side.of(quantity) is side


def test_intent_when_sell_then_side_sell_and_notional_positive():
    intent = OrderIntent("c1", T0, "X", quantity=-4.0, reference_price=25.0)

    assert intent.side is Side.SELL
    assert intent.notional == 100.0


def test_fill_side_when_buy_quantity_then_buy():
    fill = Fill("c1", T0, "X", quantity=2.0, price=10.0, commission=0.1)

    assert fill.side is Side.BUY


def test_verdicts_when_approved_or_denied_then_flag_matches():
    intent = OrderIntent("c1", T0, "X", 1.0, 10.0)

    assert Approved(intent).approved is True
    assert Denied(intent, "max_position_pct", "too big").approved is False


@pytest.mark.parametrize(
    ("entry", "exit_", "quantity", "direction", "return_pct"),
    [
        (100.0, 110.0, 5.0, "long", 0.10),
        (100.0, 90.0, 5.0, "long", -0.10),
        (100.0, 90.0, -5.0, "short", 0.10),
        (100.0, 125.0, -5.0, "short", -0.25),
    ],
)
def test_trade_when_long_or_short_then_direction_and_return_in_trade_direction(
    entry, exit_, quantity, direction, return_pct
):
    closed = trade(entry, exit_, quantity)

    assert closed.direction == direction
    assert closed.return_pct == pytest.approx(return_pct)


def test_trade_return_pct_when_commission_charged_then_still_before_costs():
    closed = Trade("X", T0, T0, 100.0, 110.0, 1.0, pnl=5.0, commission=5.0)

    assert closed.return_pct == pytest.approx(0.10)
