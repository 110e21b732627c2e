"""Pricing and costs of simulated market orders."""

from __future__ import annotations

import pytest

from ffe.domain import ConfigError
from ffe.execution.fill_model import FillModel


def test_fill_model_when_defaults_then_next_open_without_costs():
    model = FillModel()

    assert model.at == "next_open"
    assert model.delay == 1
    assert model.price(10.0, 100.0) == 100.0
    assert model.fee(10.0, 100.0) == 0.0


def test_delay_when_fill_at_close_then_same_bar():
    assert FillModel(at="close").delay == 0


def test_price_when_buying_with_slippage_then_above_reference():
    assert FillModel(slippage_bps=10).price(3.0, 100.0) == pytest.approx(100.1)


def test_price_when_selling_with_slippage_then_below_reference():
    assert FillModel(slippage_bps=10).price(-3.0, 100.0) == pytest.approx(99.9)


@pytest.mark.parametrize("quantity", [4.0, -4.0])
def test_fee_when_buy_or_sell_then_fraction_of_notional_plus_fixed(quantity):
    model = FillModel(commission=0.001, fixed_commission=1.5)

    assert model.fee(quantity, 250.0) == pytest.approx(4 * 250 * 0.001 + 1.5)


def test_cost_rate_when_commission_and_slippage_then_sum_as_fractions():
    assert FillModel(commission=0.001, slippage_bps=5).cost_rate == pytest.approx(0.0015)


def test_fill_model_when_fill_at_unknown_then_error_lists_choices():
    with pytest.raises(ConfigError, match="fill_at must be 'next_open' or 'close', got 'bogus'"):
        FillModel(at="bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "costs", [{"commission": -0.1}, {"fixed_commission": -1.0}, {"slippage_bps": -1.0}]
)
def test_fill_model_when_negative_cost_then_error(costs):
    with pytest.raises(ConfigError, match="must be >= 0"):
        FillModel(**costs)
