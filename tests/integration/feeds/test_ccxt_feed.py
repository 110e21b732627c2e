"""The ccxt feed against a local Binance speaking its public REST API."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest
from tests.integration.feeds.conftest import HOUR_MS, options
from tests.support.fake_binance import ORIGIN_MS, FakeBinanceFeed
from tests.support.server import free_port
from tests.support.venue import VenueClock

from ffe.data.feed import FeedUnavailableError, LiveFeed
from ffe.data.feeds import open_feed
from ffe.domain import ConfigError, DataError, Timeframe

H1 = Timeframe.parse("1h")
START = pd.Timestamp(ORIGIN_MS, unit="ms", tz="UTC")


async def _fetch(fake: FakeBinanceFeed, **kw: object) -> pd.DataFrame:
    limit = kw.pop("limit", None)
    feed = open_feed("ccxt:binance", options(fake.api_url, **kw))
    try:
        return await feed.fetch("BTC/USDT", H1, START, limit=limit)  # type: ignore[arg-type]
    finally:
        await feed.close()


async def test_feed_is_a_live_feed_named_as_the_source_spells_it(binance):
    feed = open_feed("ccxt:binance", options(binance.api_url))
    try:
        assert isinstance(feed, LiveFeed)
        assert feed.name == "ccxt:binance"
        assert await feed.venue_time() == START + pd.Timedelta(hours=100, minutes=30)
    finally:
        await feed.close()


async def test_fetch_when_limit_spans_pages_then_paged_by_since_each_bar_once():
    fake = FakeBinanceFeed(VenueClock(ORIGIN_MS + 2600 * HOUR_MS))
    fake.start()
    try:
        bars = await _fetch(fake, limit=2500)
    finally:
        fake.stop()

    asked = fake.klines_asked()
    assert [int(a["startTime"]) for a in asked] == [
        ORIGIN_MS, ORIGIN_MS + 1000 * HOUR_MS, ORIGIN_MS + 2000 * HOUR_MS
    ]  # fmt: skip
    assert [a["limit"] for a in asked] == ["1000", "1000", "500"]
    assert len(bars) == 2500
    assert bars.index.is_monotonic_increasing
    assert bars.index.is_unique
    assert bars.index[-1] == START + pd.Timedelta(hours=2499)
    assert {path for path, _ in fake.requests} <= {"/api/v3/exchangeInfo", "/api/v3/time",
                                                   "/api/v3/klines"}  # fmt: skip


async def test_fetch_when_last_candle_forming_then_left_out_until_it_closes(binance):
    feed = open_feed("ccxt:binance", options(binance.api_url))
    try:
        before = await feed.fetch("BTC/USDT", H1, START + pd.Timedelta(hours=98))
        binance.clock.advance(30 * 60)
        after = await feed.fetch("BTC/USDT", H1, START + pd.Timedelta(hours=98))
    finally:
        await feed.close()

    assert int(binance.klines_asked()[0]["startTime"]) == ORIGIN_MS + 98 * HOUR_MS
    assert list(before.index) == [START + pd.Timedelta(hours=h) for h in (98, 99)]
    assert after.index[-1] == START + pd.Timedelta(hours=100)


async def test_fetch_when_venue_has_gaps_then_missing_bars_not_invented(binance):
    series = binance.series("BTCUSDT", "1h")
    series.gaps |= {ORIGIN_MS + 5 * HOUR_MS, ORIGIN_MS + 6 * HOUR_MS}

    bars = await _fetch(binance)

    assert len(bars) == 100 - 2
    assert START + pd.Timedelta(hours=5) not in bars.index
    assert bars.loc[START + pd.Timedelta(hours=7), "open"] == pytest.approx(series.bar(7)[1])


async def test_fetch_when_rate_limited_once_then_waits_retry_after_and_answers(binance):
    binance.fail("/api/v3/klines", "429", retry_after="0.4")

    began = time.monotonic()
    bars = await _fetch(binance, max_backoff_s=5.0)

    assert time.monotonic() - began >= 0.4
    assert len(binance.klines_asked()) == 2
    assert len(bars) == 100


async def test_fetch_when_rate_limited_past_retries_then_feed_unavailable(binance):
    binance.fail("/api/v3/klines", "429", times=10)

    with pytest.raises(FeedUnavailableError, match=r"failed 3 times.*try again later"):
        await _fetch(binance, retries=2)

    assert len(binance.klines_asked()) == 3


async def test_fetch_when_5xx_then_asked_again(binance):
    binance.fail("/api/v3/klines", "500", times=2)

    bars = await _fetch(binance, retries=2)

    assert len(binance.klines_asked()) == 3
    assert len(bars) == 100


async def test_fetch_when_answer_not_json_then_feed_unavailable(binance):
    binance.fail("/api/v3/klines", "garbage", times=5)

    with pytest.raises(FeedUnavailableError):
        await _fetch(binance, retries=1)


async def test_fetch_when_venue_hangs_then_timeouts_bounded(binance):
    binance.fail("/api/v3/klines", "hang", times=5)
    binance.hang_s = 10.0

    began = time.monotonic()
    with pytest.raises(FeedUnavailableError, match="RequestTimeout"):
        await _fetch(binance, timeout_s=0.3, retries=1)

    assert time.monotonic() - began < 5.0  # two timeouts, not one held answer


async def test_fetch_when_venue_down_then_feed_unavailable_quickly():
    down = f"http://127.0.0.1:{free_port()}/api/v3"
    feed = open_feed("ccxt:binance", options(down, retries=2))
    began = time.monotonic()
    try:
        with pytest.raises(FeedUnavailableError, match="ccxt:binance: load markets failed 3"):
            await feed.fetch("BTC/USDT", H1, START)
    finally:
        await feed.close()

    assert time.monotonic() - began < 2.0


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (2, 1.0, "bar 2024-01-01 05:00:00 UTC: high 1 is below low"),
        (1, "abc", "bar 2024-01-01 05:00:00 UTC: open missing or not a finite number"),
        (4, -3.0, "bar 2024-01-01 05:00:00 UTC: close is -3: prices must be greater than 0"),
    ],
)
async def test_fetch_when_venue_sends_bad_bar_then_data_error_names_it(
    binance, column, value, message
):
    binance.series("BTCUSDT", "1h").corrupt[ORIGIN_MS + 5 * HOUR_MS] = {column: value}

    with pytest.raises(DataError, match=message) as caught:
        await _fetch(binance)

    assert not isinstance(caught.value, FeedUnavailableError)
    assert "ccxt:binance BTC/USDT 1h answered bad data" in str(caught.value)


async def test_fetch_when_venue_repeats_a_bar_then_data_error_names_it(binance):
    binance.series("BTCUSDT", "1h").duplicate.add(ORIGIN_MS + 5 * HOUR_MS)

    with pytest.raises(DataError, match="duplicate time 2024-01-01 05:00:00 UTC"):
        await _fetch(binance)


async def test_fetch_when_symbol_or_timeframe_unknown_then_data_error_says_what_to_use(binance):
    feed = open_feed("ccxt:binance", options(binance.api_url))
    try:
        with pytest.raises(DataError, match=r"no spot market 'DOGE/EUR'.*BTC/USDT"):
            await feed.fetch("DOGE/EUR", H1, START)
        with pytest.raises(DataError, match="no 7h candles: it offers 1s, 1m"):
            await feed.fetch("BTC/USDT", Timeframe.parse("7h"), START)
    finally:
        await feed.close()


@pytest.mark.parametrize("source", ["ccxt", "ccxt:", "ccxt:nosuchexchange", "yahoo", "binance"])
def test_open_feed_when_source_unknown_then_config_error(source):
    with pytest.raises(ConfigError, match="ccxt"):
        open_feed(source, options(None))


async def test_fetch_when_fake_runs_in_real_time_then_a_new_second_bar_closes_each_second():
    now_ms = int(time.time() * 1000)
    fake = FakeBinanceFeed(origin_ms=now_ms - now_ms % 1000 - 3000)  # the clock is real time
    fake.start()
    feed = open_feed("ccxt:binance", options(fake.api_url))
    one_second = Timeframe.parse("1s")
    origin = pd.Timestamp(fake.origin_ms, unit="ms", tz="UTC")
    try:
        first = await feed.fetch("BTC/USDT", one_second, origin)
        await asyncio.sleep(1.2)
        second = await feed.fetch("BTC/USDT", one_second, origin)
        venue_now = await feed.venue_time()
    finally:
        await feed.close()
        fake.stop()

    assert len(first) >= 3
    assert len(second) >= len(first) + 1
    assert second.index[-1] + pd.Timedelta(seconds=1) <= venue_now
    assert abs((venue_now - pd.Timestamp.now(tz="UTC")).total_seconds()) < 1
