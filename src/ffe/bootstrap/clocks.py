"""The agent's clock, wired from settings: a replay of stored bars, a poll of them, or a
venue's live feed (``ffe agent run --replay``, ``--poll``, ``--feed``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from ffe.domain.errors import ConfigError

if TYPE_CHECKING:
    from ffe.agent.feedclock import FeedClock
    from ffe.config import Settings
    from ffe.domain.market import MarketData


def agent_clock(
    settings: Settings,
    symbols: list[str],
    *,
    feed: str | None,
    timeframe: str | None,
    api_url: str | None,
    replay: bool,
    speed: float | None,
    start: str | None,
    end: str | None,
    warmup: int,
) -> tuple[Any, MarketData]:
    """The clock and the market the agent begins with: a feed's is empty until the agent,
    knowing its run, fetches its bars; stored bars are loaded from ``start`` to ``end``."""
    if feed is not None:
        clock = feed_clock(
            settings,
            feed,
            symbols,
            timeframe or "1m",
            api_url=api_url,
            start=start,
            end=end,
            warmup=warmup,
        )
        return clock, clock.market
    from ffe.agent.clock import PollingClock, ReplayClock
    from ffe.bootstrap import data_catalog
    from ffe.data import load_market

    market = load_market(data_catalog(settings), symbols, start=start, end=end)
    if replay:
        return ReplayClock(market, speed=speed), market

    async def fetch() -> MarketData:  # from --start, as the market the agent began with
        return load_market(data_catalog(settings), symbols, start=start, end=end)

    interval = settings.agent.poll_interval_s or market.timeframe.seconds
    last = moment(end, "--end", end_of_day=True)
    end_at = None if last is None else last.to_pydatetime()
    return PollingClock(fetch, interval, end=end_at), market


def feed_clock(
    settings: Settings,
    feed: str,
    symbols: list[str],
    timeframe: str,
    *,
    api_url: str | None = None,
    start: str | None = None,
    end: str | None = None,
    warmup: int = 1,
) -> FeedClock:
    """A clock that steps each bar of ``symbols`` as it closes on ``feed``; its market is
    empty until the agent prepares it. ``warmup`` is the strategy's."""
    from ffe.agent.feedclock import FeedClock, FeedClockOptions
    from ffe.bootstrap.feeds import feed_options
    from ffe.data.calendars import calendar_for
    from ffe.data.feeds import open_feed
    from ffe.domain.timeframe import Timeframe

    chosen = settings.agent
    options = FeedClockOptions(
        warmup=max(chosen.window_bars, 3 * warmup),
        start=moment(start, "--start"),
        end=moment(end, "--end", end_of_day=True),
        stale_bars=chosen.stale_bars,
        backoff_s=settings.data.feed_backoff_s or 1.0,
        backoff_max_s=max(settings.data.feed_max_backoff_s, settings.data.feed_backoff_s, 1.0),
    )
    # The clock asks again itself, with that backoff, reporting the outage and obeying
    # commands meanwhile: the feed asks once per request.
    reach = replace(feed_options(settings, feed, api_url), retries=0)
    return FeedClock(
        open_feed(feed, reach),
        symbols,
        Timeframe.parse(timeframe),
        options,
        calendar_for(feed, chosen.calendar),
    )


def moment(text: str | None, option: str, *, end_of_day: bool = False) -> Any:
    """``text`` (a date or an ISO time; naive is UTC) as a UTC timestamp; a bare date as an
    end means the end of that day."""
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a date or time: write 2024-05-01 or 2024-05-01T13:30"
        ) from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if end_of_day and len(text.strip()) == 10:
        stamp += pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return stamp
