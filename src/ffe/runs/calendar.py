"""Daily, monthly and yearly returns of an equity curve, for a calendar heatmap.

Each period's return is its last equity over the last equity of the period before, minus
one; the first period is measured from the curve's first point. Periods are UTC calendar
days, months and years; a period with no point is absent (a weekend of daily bars), not 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PeriodReturn:
    """One period: its label (``2024-03-15``, ``2024-03`` or ``2024``) and its return
    (None when the equity it starts from is not positive)."""

    period: str
    value: float | None


@dataclass(frozen=True, slots=True)
class CalendarReturns:
    daily: list[PeriodReturn]
    monthly: list[PeriodReturn]
    yearly: list[PeriodReturn]


def calendar_returns(times: Sequence[datetime], equity: Sequence[float]) -> CalendarReturns:
    """The curve's returns by UTC day, month and year. ``times`` must be in order, with one
    equity value each; anything else is refused with a ValueError."""
    if len(times) != len(equity):
        raise ValueError(f"{len(times)} times but {len(equity)} equity values")
    if any(later < earlier for earlier, later in itertools.pairwise(times)):
        raise ValueError("the equity curve's times are not in order")
    return CalendarReturns(
        daily=_by(times, equity, lambda t: (t.year, t.month, t.day), "{0:04d}-{1:02d}-{2:02d}"),
        monthly=_by(times, equity, lambda t: (t.year, t.month), "{0:04d}-{1:02d}"),
        yearly=_by(times, equity, lambda t: (t.year,), "{0:04d}"),
    )


def _by(
    times: Sequence[datetime],
    equity: Sequence[float],
    key: Callable[[datetime], tuple[int, ...]],
    label: str,
) -> list[PeriodReturn]:
    closes: dict[tuple[int, ...], float] = {}
    for time, point in zip(times, equity, strict=True):
        closes[key(time)] = point  # the last point of the period wins
    found = []
    before = equity[0] if equity else 0.0
    for period, close in closes.items():
        change = close / before - 1.0 if before > 0 else None
        found.append(PeriodReturn(label.format(*period), change))
        before = close
    return found
