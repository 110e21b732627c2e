from __future__ import annotations

import math
from dataclasses import fields

import pytest

from ffe.backtest.objective import DIRECTIONS, describe, direction_of, is_better, rank_key
from ffe.domain import ConfigError
from ffe.portfolio.stats import Stats


def test_directions_when_listed_then_each_names_a_statistic() -> None:
    names = {f.name for f in fields(Stats)}

    assert set(DIRECTIONS) <= names
    assert set(DIRECTIONS.values()) == {"maximize", "minimize"}


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("sharpe", "maximize"),
        ("total_return", "maximize"),
        ("max_drawdown", "maximize"),  # stored <= 0: -0.05 is a shallower drawdown than -0.3
        ("annual_volatility", "minimize"),
        ("max_drawdown_duration", "minimize"),
        ("commissions", "minimize"),
    ],
)
def test_direction_of_when_rankable_then_the_better_way(metric: str, direction: str) -> None:
    assert direction_of(metric) == direction


@pytest.mark.parametrize("metric", ["n_trades", "exposure", "start", "shrp"])
def test_direction_of_when_no_better_way_then_config_error_listing_rankable(metric: str) -> None:
    with pytest.raises(ConfigError, match=f"cannot rank by '{metric}'") as raised:
        direction_of(metric)

    assert "sharpe" in str(raised.value)
    assert "annual_volatility" in str(raised.value)


def test_rank_key_when_minimize_then_smallest_first_and_missing_last() -> None:
    values = [0.3, None, 0.1, "inf", 0.2, float("nan")]

    ranked = sorted(values, key=lambda v: rank_key(v, "minimize"))

    assert ranked[:4] == [0.1, 0.2, 0.3, "inf"]
    assert ranked[4] is None
    assert math.isnan(ranked[5])


def test_rank_key_when_maximize_then_largest_first_with_inf_best_and_missing_last() -> None:
    values = [0.3, None, -1, "inf", "-inf"]

    ranked = sorted(values, key=lambda v: rank_key(v, "maximize"))

    assert ranked == ["inf", 0.3, -1, "-inf", None]


def test_is_better_when_minimize_then_smaller_wins_and_nan_never_does() -> None:
    assert is_better(1.0, 2.0, "minimize")
    assert not is_better(2.0, 1.0, "minimize")
    assert is_better(2.0, 1.0, "maximize")
    assert is_better(5.0, math.nan, "minimize")
    assert not is_better(math.nan, 5.0, "maximize")


def test_describe_says_which_way_is_better() -> None:
    assert describe("minimize") == "lower is better"
    assert describe("maximize") == "higher is better"
