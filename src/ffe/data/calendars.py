"""When a venue makes bars: every moment (crypto), five days a week (forex), or its exchange's
sessions (equities, through the ``exchange_calendars`` library).

Bars start at multiples of their timeframe since the Unix epoch (UTC), as exchanges label
them; a venue makes a bar when it is open at some moment of the bar's span. The agent's live
clock asks ``next_bar`` so that it neither waits for bars while a market is closed nor calls
a missing weekend bar a gap.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pandas as pd

from ffe.domain.errors import ConfigError

_NEW_YORK = ZoneInfo("America/New_York")
_ALWAYS = ("ccxt", "kalshi")  # venues that trade around the clock
_FOREX = ("oanda",)
_EQUITIES = ("alphavantage",)


class VenueCalendar(Protocol):
    """The bars a venue makes."""

    name: str

    def next_bar(self, start: pd.Timestamp, seconds: int) -> pd.Timestamp:
        """The start of the first bar of ``seconds`` at or after ``start`` (aligned) that the
        venue makes."""
        ...


def align(start: pd.Timestamp, seconds: int) -> pd.Timestamp:
    """The start of the bar of ``seconds`` that holds ``start``."""
    step = seconds * 1_000_000_000
    return pd.Timestamp(start.value - start.value % step, tz="UTC")


def _ceil(start: pd.Timestamp, seconds: int) -> pd.Timestamp:
    floor = align(start, seconds)
    return floor if floor == start else floor + pd.Timedelta(seconds=seconds)


class AlwaysOpen:
    """A venue that makes every bar (crypto exchanges)."""

    name = "24/7"

    def next_bar(self, start: pd.Timestamp, seconds: int) -> pd.Timestamp:
        return _ceil(start, seconds)


class ForexWeek:
    """Forex: open from Sunday 17:00 to Friday 17:00 New York time, the usual convention of
    retail FX venues (OANDA among them); holidays are not modelled (a missing holiday bar reads
    as a short outage)."""

    name = "forex 24x5"

    def open_at(self, moment: pd.Timestamp) -> bool:
        local = moment.tz_convert(_NEW_YORK)
        day, hour = local.weekday(), local.hour  # Monday is 0
        if day == 5:
            return False
        if day == 4:
            return hour < 17
        if day == 6:
            return hour >= 17
        return True

    def next_bar(self, start: pd.Timestamp, seconds: int) -> pd.Timestamp:
        bar = _ceil(start, seconds)
        step = pd.Timedelta(seconds=seconds)
        for _ in range(10_000):  # a weekend is 2,880 one-minute bars; longer bars fewer
            if self.open_at(bar) or self.open_at(bar + step - pd.Timedelta(1, "ns")):
                return bar
            bar = max(bar + step, _ceil(self._reopens(bar), seconds) - step)
        return bar

    def _reopens(self, moment: pd.Timestamp) -> pd.Timestamp:
        local = moment.tz_convert(_NEW_YORK)
        sunday = (local + timedelta(days=(6 - local.weekday()) % 7)).normalize()
        return pd.Timestamp(sunday + timedelta(hours=17)).tz_convert("UTC")


class ExchangeSessions:
    """An exchange's trading sessions from ``exchange_calendars`` (``XNYS`` for US equities):
    weekends, holidays and early closes included."""

    def __init__(self, code: str) -> None:
        import exchange_calendars

        try:
            self._calendar: Any = exchange_calendars.get_calendar(code)
        except Exception as exc:  # the library raises its own InvalidCalendarName
            raise ConfigError(f"unknown exchange calendar {code!r}: {exc}") from None
        self.name = code

    def next_bar(self, start: pd.Timestamp, seconds: int) -> pd.Timestamp:
        bar = _ceil(start, seconds)
        step = pd.Timedelta(seconds=seconds)
        for _ in range(10_000):
            if self._made(bar, step):
                return bar
            if seconds >= 86_400:
                bar += step
            else:  # nothing traded in the bar: the next session's first bar
                bar = max(bar + step, align(self._calendar.next_open(bar), seconds))
        return bar

    def _made(self, bar: pd.Timestamp, step: pd.Timedelta) -> bool:
        calendar = self._calendar
        if step >= pd.Timedelta(days=1):  # daily bars are labelled by their session's date
            return bool(calendar.is_session(bar.tz_localize(None).normalize()))
        first = bar.floor("min")
        last = (bar + step - pd.Timedelta(seconds=1)).floor("min")
        if first == last:
            return bool(calendar.is_open_on_minute(first))
        return len(calendar.minutes_in_range(first, last)) > 0


def calendar_for(feed: str, exchange: str | None = None) -> VenueCalendar:
    """The calendar of the venue behind ``feed`` (``ccxt:binance``, ``oanda``,
    ``alphavantage``): ``exchange`` (an exchange_calendars code) when given, else crypto
    around the clock, forex five days a week, equities on the New York Stock Exchange's."""
    if exchange:
        return ExchangeSessions(exchange)
    kind = feed.partition(":")[0].lower()
    if kind in _ALWAYS:
        return AlwaysOpen()
    if kind in _FOREX:
        return ForexWeek()
    if kind in _EQUITIES:
        return ExchangeSessions("XNYS")
    return AlwaysOpen()
