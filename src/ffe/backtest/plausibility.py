"""Results too good to be true: what a backtest's statistics say about its strategy.

A Sharpe ratio above 5 on daily bars, or a hundredfold return, is beyond what trading on the
past gives; nearly always the strategy saw the future (it loaded the data file itself instead
of reading the history it was given, or shifted a series the wrong way). The run still counts,
and says so wherever it is shown.
"""

from __future__ import annotations

from ffe.domain.timeframe import Timeframe
from ffe.portfolio.stats import Stats

MAX_DAILY_SHARPE = 5.0
MAX_GROWTH = 100.0  # final equity over initial
_DAY_S = 86_400
CAUSE = (
    "the usual cause is a strategy reading future data, e.g. one that loads the data file "
    "itself instead of using the history it is given: check it with `ffe check lookahead`"
)


def implausible(stats: Stats, timeframe: Timeframe) -> list[str]:
    """Warnings for statistics no honest strategy reaches, each saying what and why."""
    found = []
    if timeframe.seconds >= _DAY_S and stats.sharpe > MAX_DAILY_SHARPE:
        found.append(
            f"implausible Sharpe ratio {stats.sharpe:.2f} on {timeframe} bars (above "
            f"{MAX_DAILY_SHARPE:g}): {CAUSE}"
        )
    if stats.total_return + 1.0 > MAX_GROWTH:
        found.append(
            f"implausible total return: equity grew {stats.total_return + 1.0:,.0f}x (above "
            f"{MAX_GROWTH:g}x): {CAUSE}"
        )
    return found
