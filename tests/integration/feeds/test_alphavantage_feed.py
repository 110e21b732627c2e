"""The Alpha Vantage feed against a local server speaking its query API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.integration.feeds.conftest import options
from tests.support.fake_alphavantage import API_KEY, ORIGIN_MS, FakeAlphaVantage
from tests.support.server import free_port
from tests.support.venue import VenueClock

from ffe.data import DataCatalog
from ffe.data.feed import FeedUnavailableError, LiveFeed
from ffe.data.feeds.alphavantage import AlphaVantageFeed
from ffe.data.fetching import fetch_into_catalog
from ffe.domain import ConfigError, DataError, Timeframe

D1, H1, M5 = Timeframe.parse("1d"), Timeframe.parse("1h"), Timeframe.parse("5m")
START = pd.Timestamp(ORIGIN_MS, unit="ms", tz="UTC")
DAY_MS = 86_400_000


@pytest.fixture
def venue() -> Iterator[FakeAlphaVantage]:
    """Alpha Vantage with its clock standing at noon (UTC), 150 days after 2024-01-01."""
    fake = FakeAlphaVantage(VenueClock(ORIGIN_MS + 150 * DAY_MS + DAY_MS // 2))
    fake.start()
    yield fake
    fake.stop()


def _feed(fake: FakeAlphaVantage, **kw: object) -> AlphaVantageFeed:
    opts = options(fake.url, api_key=API_KEY, **kw)
    return AlphaVantageFeed(
        opts, clock=lambda: pd.Timestamp(fake.clock.now_ms(), unit="ms", tz="UTC")
    )


async def _fetch(fake: FakeAlphaVantage, timeframe=D1, since=None, **kw: object) -> pd.DataFrame:
    feed = _feed(fake, **kw)
    try:
        return await feed.fetch("IBM", timeframe, since)
    finally:
        await feed.close()


async def test_daily_when_compact_then_latest_closed_bars_oldest_first(venue):
    bars = await _fetch(venue)

    assert isinstance(_feed(venue), LiveFeed)
    assert venue.requests[0] == {"function": "TIME_SERIES_DAILY", "symbol": "IBM",
                                 "outputsize": "compact", "apikey": API_KEY}  # fmt: skip
    assert len(bars) == 99  # the latest 100, less today's, still forming
    assert bars.index[-1] == START + pd.Timedelta(days=149)
    assert bars.index.is_monotonic_increasing
    assert bars.loc[START + pd.Timedelta(days=149), "close"] == pytest.approx(
        venue.series("IBM", "daily").bar(149)[4], abs=1e-4
    )


async def test_intraday_when_asked_then_raw_regular_session_times_turned_to_utc(venue):
    since = START + pd.Timedelta(days=150, hours=5)  # compact: the latest 100 bars reach it
    bars = await _fetch(venue, M5, since=since)

    asked = venue.requests[0]
    assert (asked["function"], asked["interval"]) == ("TIME_SERIES_INTRADAY", "5min")
    assert (asked["adjusted"], asked["extended_hours"]) == ("false", "false")
    assert bars.index[0] == since  # 00:00 US/Eastern on the wire, 05:00 UTC here
    assert bars.loc[since, "open"] == pytest.approx(
        venue.series("IBM", "5min").bar(150 * 288 + 60)[1], abs=1e-4
    )
    assert bars.index[-1] == START + pd.Timedelta(days=150, hours=11, minutes=55)


async def test_intraday_when_full_history_then_pages_a_month_at_a_time(venue, tmp_path: Path):
    venue.clock.set(ORIGIN_MS + 70 * DAY_MS)  # 2024-03-11
    feed = _feed(venue, full_history=True)
    catalog = DataCatalog(tmp_path / "data")
    since = pd.Timestamp("2024-01-15", tz="UTC")
    try:
        summary = await fetch_into_catalog(catalog, feed, "IBM", H1, since)
    finally:
        await feed.close()

    assert [r.get("month") for r in venue.requests] == ["2024-01", "2024-02", None]
    assert {r["outputsize"] for r in venue.requests} == {"full"}
    hours = (pd.Timestamp("2024-03-11", tz="UTC") - since) // pd.Timedelta(hours=1)
    assert summary.fetched == hours
    assert catalog.load("IBM").index.is_unique


@pytest.mark.parametrize("kind", ["note", "information", "500"])
async def test_fetch_when_rate_limited_once_then_asked_again_and_answers(venue, kind):
    venue.fail(kind)

    bars = await _fetch(venue)

    assert len(venue.requests) == 2
    assert len(bars) == 99


async def test_fetch_when_over_limit_past_retries_then_unavailable_with_its_words(venue):
    venue.fail("information", "note", "information")

    with pytest.raises(FeedUnavailableError, match=r"failed 3 times; last: rate limited \(Info"):
        await _fetch(venue, retries=2)

    assert len(venue.requests) == 3


async def test_fetch_when_venue_hangs_then_timeouts_bounded(venue):
    venue.fail("hang", "hang")
    venue.hang_s = 10.0

    began = time.monotonic()
    with pytest.raises(FeedUnavailableError, match="timed out"):
        await _fetch(venue, timeout_s=0.3, retries=1)

    assert time.monotonic() - began < 5.0  # two timeouts, not one held answer


async def test_fetch_when_error_message_then_data_error_not_retried(venue):
    venue.fail("error")

    with pytest.raises(DataError, match="alphavantage refused the request: Invalid API call"):
        await _fetch(venue)

    assert len(venue.requests) == 1


async def test_fetch_when_bad_bar_then_data_error_names_its_day(venue):
    venue.series("IBM", "daily").corrupt[ORIGIN_MS + 120 * DAY_MS] = {4: "n/a"}

    with pytest.raises(DataError, match="bar 2024-04-30: close missing or not a finite number"):
        await _fetch(venue)


async def test_fetch_when_timeframe_not_offered_then_data_error_lists_them(venue):
    with pytest.raises(DataError, match="alphavantage has no 4h bars: use 1d, or one of 1m, 5m"):
        await _fetch(venue, Timeframe.parse("4h"))


def test_feed_when_no_key_then_config_error_says_where_to_get_one():
    with pytest.raises(ConfigError, match=r"data\.alpha_vantage_key"):
        AlphaVantageFeed(options("http://127.0.0.1:1/query"))


async def test_fetch_when_venue_down_then_feed_unavailable_quickly():
    down = f"http://127.0.0.1:{free_port()}/query"
    feed = AlphaVantageFeed(options(down, api_key=API_KEY, retries=2))
    began = time.monotonic()
    try:
        with pytest.raises(FeedUnavailableError, match="cannot connect"):
            await feed.fetch("IBM", D1)
    finally:
        await feed.close()

    assert time.monotonic() - began < 2.0
