"""Venue calendars: which bars a venue makes (crypto every one, forex five days a week,
equities in their exchange's sessions), so the live clock waits only for bars that come."""

from __future__ import annotations

import pandas as pd
import pytest

from ffe.data.calendars import AlwaysOpen, ExchangeSessions, ForexWeek, align, calendar_for
from ffe.domain.errors import ConfigError


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_align_when_inside_a_bar_then_its_start():
    assert align(_t("2024-03-08 10:07:31"), 300) == _t("2024-03-08 10:05")


def test_always_open_when_between_bars_then_next_bar_start():
    calendar = AlwaysOpen()

    assert calendar.next_bar(_t("2024-03-09 10:07:31"), 60) == _t("2024-03-09 10:08")
    assert calendar.next_bar(_t("2024-03-09 10:08"), 60) == _t("2024-03-09 10:08")


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        ("2024-03-08 20:59", 60, "2024-03-08 20:59"),  # Friday's last minute (16:00 NY, EST)
        ("2024-03-08 21:00", 60, "2024-03-11 13:30"),  # then Monday's open, EDT by then
        ("2024-03-09 12:00", 86_400, "2024-03-11 00:00"),  # no weekend daily bar
        ("2024-03-11 13:00", 3_600, "2024-03-11 13:00"),  # the hour holding the open
        ("2024-12-25 15:00", 60, "2024-12-26 14:30"),  # a holiday
        ("2024-03-11 13:30:01", 1, "2024-03-11 13:30:01"),
    ],
)
def test_exchange_sessions_when_closed_then_next_bar_is_the_next_sessions(start, seconds, expected):
    assert ExchangeSessions("XNYS").next_bar(_t(start), seconds) == _t(expected)


def test_forex_week_when_friday_evening_new_york_then_sunday_evening():
    calendar = ForexWeek()

    assert calendar.next_bar(_t("2024-01-05 21:58"), 60) == _t("2024-01-05 21:58")
    assert calendar.next_bar(_t("2024-01-05 22:00"), 60) == _t("2024-01-07 22:00")
    assert calendar.next_bar(_t("2024-01-10 03:00:30"), 60) == _t("2024-01-10 03:01")


@pytest.mark.parametrize(
    ("feed", "kind"),
    [
        ("ccxt:binance", AlwaysOpen),
        ("kalshi", AlwaysOpen),
        ("oanda", ForexWeek),
        ("alphavantage", ExchangeSessions),
    ],
)
def test_calendar_for_when_feed_named_then_its_venues_calendar(feed, kind):
    assert isinstance(calendar_for(feed), kind)


def test_calendar_for_when_exchange_given_then_that_exchange():
    calendar = calendar_for("ccxt:binance", "XLON")

    assert calendar.name == "XLON"


def test_calendar_for_when_exchange_unknown_then_config_error_names_it():
    with pytest.raises(ConfigError, match="unknown exchange calendar 'NOPE'"):
        calendar_for("alphavantage", "NOPE")
