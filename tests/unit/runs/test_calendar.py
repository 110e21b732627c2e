"""Calendar returns: by UTC day, month and year, from the last equity of each period."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ffe.runs.calendar import calendar_returns


def t(month: int, day: int, hour: int = 0, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_calendar_returns_when_intraday_points_then_each_day_from_the_close_before():
    times = [t(1, 1, 9), t(1, 1, 17), t(1, 2, 9), t(1, 2, 17), t(1, 4, 17)]
    equity = [100.0, 110.0, 99.0, 121.0, 108.9]

    found = calendar_returns(times, equity)

    assert [d.period for d in found.daily] == ["2024-01-01", "2024-01-02", "2024-01-04"]
    assert [d.value for d in found.daily] == pytest.approx([0.10, 0.10, -0.10])


def test_calendar_returns_by_month_and_year_then_compounded_from_the_period_before():
    times = [t(12, 31, year=2023), t(1, 15), t(1, 31), t(2, 29), t(3, 1)]
    equity = [100.0, 90.0, 105.0, 126.0, 113.4]

    found = calendar_returns(times, equity)

    assert [(m.period, round(m.value or 0, 6)) for m in found.monthly] == [
        ("2023-12", 0.0), ("2024-01", 0.05), ("2024-02", 0.2), ("2024-03", -0.1),
    ]  # fmt: skip
    assert [y.period for y in found.yearly] == ["2023", "2024"]
    assert found.yearly[1].value == pytest.approx(0.134)


def test_calendar_returns_when_equity_before_is_not_positive_then_none():
    found = calendar_returns([t(1, 1), t(1, 2), t(1, 3)], [100.0, 0.0, 5.0])

    assert [d.value for d in found.daily] == [0.0, -1.0, None]


def test_calendar_returns_when_times_out_of_order_then_refused():
    with pytest.raises(ValueError, match="not in order"):
        calendar_returns([t(1, 2), t(1, 1)], [1.0, 2.0])


def test_calendar_returns_of_an_empty_curve_then_empty():
    found = calendar_returns([], [])

    assert found.daily == found.monthly == found.yearly == []
