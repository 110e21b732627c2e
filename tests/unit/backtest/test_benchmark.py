"""The buy-and-hold benchmark: equal weight, bought once at the first close, costs paid."""

from __future__ import annotations

import numpy as np
import pytest

from ffe.backtest.benchmark import Costs, buy_and_hold, with_costs
from ffe.domain.errors import ConfigError

NAN = np.nan


def test_buy_and_hold_when_no_costs_then_follows_the_price() -> None:
    value = buy_and_hold(np.array([100.0, 110.0, 90.0]), 1_000.0)
    np.testing.assert_allclose(value, [1_000.0, 1_100.0, 900.0])


def test_buy_and_hold_when_costs_then_the_purchase_pays_them() -> None:
    costs = Costs(commission=0.001, slippage_bps=2.0)
    value = buy_and_hold(np.array([100.0, 120.0]), 10_000.0, costs)
    units = 10_000.0 / (100.0 * 1.0002 * 1.001)
    np.testing.assert_allclose(value, [units * 100.0, units * 120.0])
    assert value[0] < 10_000.0  # the costs are gone at once


def test_buy_and_hold_when_two_symbols_then_half_the_cash_in_each() -> None:
    closes = np.array([[10.0, 100.0], [20.0, 100.0]])
    np.testing.assert_allclose(buy_and_hold(closes, 1_000.0), [1_000.0, 1_500.0])


def test_buy_and_hold_when_a_symbol_starts_later_then_its_share_is_cash_until_then() -> None:
    closes = np.array([[10.0, NAN], [10.0, 50.0], [10.0, 100.0]])
    np.testing.assert_allclose(buy_and_hold(closes, 1_000.0), [1_000.0, 1_000.0, 1_500.0])


def test_buy_and_hold_when_a_close_is_missing_then_the_last_one_marks_it() -> None:
    value = buy_and_hold(np.array([100.0, NAN, 150.0]), 1_000.0)
    np.testing.assert_allclose(value, [1_000.0, 1_000.0, 1_500.0])


def test_buy_and_hold_when_fixed_commission_then_taken_from_each_share() -> None:
    value = buy_and_hold(np.array([[10.0, 10.0], [20.0, 10.0]]), 1_000.0, Costs(fixed_commission=5))
    np.testing.assert_allclose(value, [990.0, 990.0 + 495.0])


@pytest.mark.parametrize(
    ("closes", "cash"), [(np.array([100.0, -1.0]), 1_000.0), (np.array([100.0]), 0.0)]
)
def test_buy_and_hold_when_bad_input_then_config_error(closes: np.ndarray, cash: float) -> None:
    with pytest.raises(ConfigError, match="benchmark"):
        buy_and_hold(closes, cash)


def test_costs_when_negative_then_refused() -> None:
    with pytest.raises(ConfigError, match="negative"):
        Costs(commission=-0.1)


def test_with_costs_when_applied_then_matches_the_curve() -> None:
    costs = Costs(commission=0.001, slippage_bps=2.0)
    value = buy_and_hold(np.array([100.0, 180.0]), 10_000.0, costs)
    assert with_costs(0.8, costs) == pytest.approx(value[-1] / 10_000.0 - 1.0)


def test_costs_describe_when_defaults_then_says_basis_points() -> None:
    assert Costs(0.001, 2.0).describe() == "10 bp commission, 2 bp slippage on the purchase"
