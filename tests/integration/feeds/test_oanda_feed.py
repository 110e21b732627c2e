"""The OANDA candles feed against the local v20 server (``tests/support/fake_oanda.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.integration.feeds.conftest import HOUR_MS, options
from tests.support.fake_oanda import FakeOanda, Fault
from tests.support.server import free_port
from tests.support.venue import VenueClock

from ffe.data import DataCatalog
from ffe.data.feed import FeedUnavailableError
from ffe.data.feeds import open_feed
from ffe.data.fetching import fetch_into_catalog
from ffe.domain import ConfigError, DataError, Timeframe

H1 = Timeframe.parse("1h")
ORIGIN_MS = 1_704_067_200_000
START = pd.Timestamp(ORIGIN_MS, unit="ms", tz="UTC")


@pytest.fixture
def oanda() -> Iterator[FakeOanda]:
    """OANDA with its clock standing 100.5 hours after 2024-01-01."""
    fake = FakeOanda(clock=VenueClock(ORIGIN_MS + 100 * HOUR_MS + HOUR_MS // 2))
    fake.start()
    yield fake
    fake.stop()


def _candles(fake: FakeOanda) -> list[int]:
    return [i for i, (_, path) in enumerate(fake.requests) if path.endswith("/candles")]


async def _fetch(fake: FakeOanda, symbol="EUR_USD", timeframe=H1, since=START, **kw):
    feed = open_feed("oanda", options(fake.url, api_key=kw.pop("token", fake.token), **kw))
    try:
        return await feed.fetch(symbol, timeframe, since)
    finally:
        await feed.close()


async def test_fetch_when_asked_then_complete_mid_candles_by_the_venue_clock(oanda):
    bars = await _fetch(oanda, "EUR/USD")

    (_, path), headers = oanda.requests[-1], oanda.headers[-1]
    assert path == "/v3/instruments/EUR_USD/candles"
    assert headers["authorization"] == f"Bearer {oanda.token}"
    assert len(bars) == 100  # hours 0..99; hour 100 is forming (complete: false)
    assert bars.index[-1] == START + pd.Timedelta(hours=99)
    expected = oanda.candle_series("EUR_USD", "H1").bar(99)
    assert bars.iloc[-1]["close"] == pytest.approx(expected[4], abs=1e-5)


async def test_venue_time_when_asked_then_the_date_header(oanda):
    feed = open_feed("oanda", options(oanda.url, api_key=oanda.token))
    try:
        now = await feed.venue_time()
    finally:
        await feed.close()

    assert now == START + pd.Timedelta(hours=100, minutes=30)


async def test_fetch_when_history_long_then_paged_by_from(tmp_path: Path):
    fake = FakeOanda(clock=VenueClock(ORIGIN_MS + 1200 * HOUR_MS + 60_000))
    fake.start()
    feed = open_feed("oanda", options(fake.url, api_key=fake.token))
    try:
        summary = await fetch_into_catalog(DataCatalog(tmp_path), feed, "EUR_USD", H1, START)
    finally:
        await feed.close()
        fake.stop()

    assert len(_candles(fake)) == 3  # 500 + 500 + 200
    assert summary.fetched == 1200


async def test_fetch_when_daily_then_aligned_to_midnight_utc(oanda):
    oanda.clock.set(ORIGIN_MS + 10 * 86_400_000)

    bars = await _fetch(oanda, timeframe=Timeframe.parse("1d"))

    assert len(bars) == 10
    assert (bars.index == bars.index.normalize()).all()


async def test_fetch_when_429_then_waits_retry_after_and_answers(oanda):
    oanda.inject(Fault("GET", "/candles", status=429, retry_after="0.3"))

    began = time.monotonic()
    bars = await _fetch(oanda, max_backoff_s=5.0)

    assert time.monotonic() - began >= 0.3
    assert len(_candles(oanda)) == 2
    assert len(bars) == 100


async def test_fetch_when_unavailable_past_retries_then_feed_unavailable(oanda):
    oanda.inject(Fault("GET", "/candles", status=503, times=5))

    with pytest.raises(FeedUnavailableError, match="oanda: fetch EUR_USD 1h candles failed 3"):
        await _fetch(oanda, retries=2)

    assert len(_candles(oanda)) == 3


async def test_fetch_when_answer_held_then_timeouts_bounded(oanda):
    oanda.inject(Fault("GET", "/candles", hold_s=10.0, times=5))

    began = time.monotonic()
    with pytest.raises(FeedUnavailableError, match="timed out"):
        await _fetch(oanda, timeout_s=0.3, retries=1)

    assert time.monotonic() - began < 5.0  # two timeouts, not one held answer


async def test_fetch_when_gaps_then_missing_candles_not_invented(oanda):
    oanda.candle_series().gaps.add(ORIGIN_MS + 7 * HOUR_MS)

    bars = await _fetch(oanda)

    assert len(bars) == 99
    assert START + pd.Timedelta(hours=7) not in bars.index


async def test_fetch_when_candles_newest_first_then_data_error(oanda):
    oanda.candles_reversed = True

    with pytest.raises(DataError, match="the bars are newest first"):
        await _fetch(oanda)


async def test_fetch_when_candle_repeated_then_data_error_names_it(oanda):
    oanda.candle_series().duplicate.add(ORIGIN_MS + 3 * HOUR_MS)

    with pytest.raises(DataError, match="bar 2024-01-01 03:00:00 UTC: duplicate time"):
        await _fetch(oanda)


async def test_fetch_when_price_not_a_number_then_data_error_names_the_bar(oanda):
    oanda.candle_series().corrupt[ORIGIN_MS + 4 * HOUR_MS] = {3: "x"}

    with pytest.raises(DataError, match=r"oanda EUR_USD 1h answered bad data: bar 2024-01-01 04"):
        await _fetch(oanda)


async def test_fetch_when_token_wrong_then_config_error(oanda):
    with pytest.raises(ConfigError, match=r"oanda refused the token \(HTTP 401"):
        await _fetch(oanda, token="wrong")


async def test_fetch_when_instrument_unknown_then_data_error_not_retried(oanda):
    with pytest.raises(DataError, match=r"oanda refused the request \(HTTP 400\)"):
        await _fetch(oanda, symbol="XAU_XYZ")

    assert len(_candles(oanda)) == 1


def test_feed_when_no_token_then_config_error():
    with pytest.raises(ConfigError, match=r"data\.oanda_token"):
        open_feed("oanda", options("http://127.0.0.1:1"))


async def test_fetch_when_venue_down_then_feed_unavailable_quickly():
    feed = open_feed("oanda", options(f"http://127.0.0.1:{free_port()}", api_key="t", retries=2))
    began = time.monotonic()
    try:
        with pytest.raises(FeedUnavailableError, match=r"oanda: fetch EUR_USD 1h.*cannot connect"):
            await feed.fetch("EUR_USD", H1, START)
    finally:
        await feed.close()

    assert time.monotonic() - began < 2.0
