"""Which way is better for each statistic that runs can be ranked by: the one table of it.

Sweeps (the CLI, the API's jobs, the HTML report) rank with it, and a tuner hands the same word
to Optuna (``optuna.create_study(direction=direction_of(metric))``). A statistic with no better
way (the number of trades, the exposure, the dates) is not a ranking metric at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from ffe.domain.errors import ConfigError

Direction = Literal["maximize", "minimize"]

DIRECTIONS: Mapping[str, Direction] = MappingProxyType(
    {
        "final_equity": "maximize",
        "total_return": "maximize",
        "cagr": "maximize",
        "annual_volatility": "minimize",
        "sharpe": "maximize",
        "sortino": "maximize",
        "calmar": "maximize",
        "max_drawdown": "maximize",  # a fraction <= 0: closer to zero is a shallower drawdown
        "max_drawdown_duration": "minimize",
        "win_rate": "maximize",
        "profit_factor": "maximize",
        "expectancy": "maximize",
        "avg_trade_return": "maximize",
        "best_trade": "maximize",
        "worst_trade": "maximize",  # the worst trade's return: the less negative the better
        "commissions": "minimize",
    }
)
"""Every rankable statistic of ``ffe.portfolio.stats.Stats`` and which way is better."""


def direction_of(metric: str) -> Direction:
    """Which way is better for ``metric``; a ConfigError naming the rankable ones otherwise."""
    direction = DIRECTIONS.get(metric)
    if direction is None:
        raise ConfigError(
            f"cannot rank by {metric!r}: it is not a statistic with a better direction; "
            f"choose one of: {', '.join(DIRECTIONS)}"
        )
    return direction


def describe(direction: Direction) -> str:
    """``"higher is better"`` or ``"lower is better"``, for people reading a ranking."""
    return "higher is better" if direction == "maximize" else "lower is better"


def rank_key(value: Any, direction: Direction) -> tuple[int, float]:
    """Sort key putting the best value first and missing values last.

    Values come as ``Stats.as_dict`` writes them: numbers, None for NaN, and "inf" / "-inf"
    for infinities (a profit factor with no losing trade is "inf": the best).
    """
    number = as_number(value)
    if math.isnan(number):
        return (1, 0.0)
    return (0, -number if direction == "maximize" else number)


def is_better(value: float, than: float, direction: Direction) -> bool:
    """Whether ``value`` beats ``than``; a number beats NaN, NaN beats nothing."""
    if math.isnan(value):
        return False
    if math.isnan(than):
        return True
    return value > than if direction == "maximize" else value < than


def as_number(value: Any) -> float:
    """A statistic's value as a float: NaN where it has none (None, a flag, a date)."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    if value in ("inf", "-inf"):
        return float(value)
    return math.nan
