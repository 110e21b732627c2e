"""``ffe.data.fetching``: a feed's bars into the catalog, resumably, against a local Binance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tests.integration.feeds.conftest import HOUR_MS, options
from tests.support.fake_binance import ORIGIN_MS, FakeBinanceFeed
from tests.support.venue import VenueClock

from ffe.data import DataCatalog
from ffe.data.feed import FeedUnavailableError
from ffe.data.feeds import open_feed
from ffe.data.fetching import fetch_into_catalog, parse_time
from ffe.domain import DataError, Timeframe

H1 = Timeframe.parse("1h")
START = pd.Timestamp(ORIGIN_MS, unit="ms", tz="UTC")


async def _run(fake: FakeBinanceFeed, catalog: DataCatalog, since=START, **kw):
    feed = open_feed("ccxt:binance", options(fake.api_url, retries=kw.pop("retries", 2)))
    try:
        return await fetch_into_catalog(catalog, feed, "BTC/USDT", H1, since, **kw)
    finally:
        await feed.close()


def _starts(fake: FakeBinanceFeed) -> list[int]:
    """Hours after the origin that each klines request started at."""
    return [(int(a["startTime"]) - ORIGIN_MS) // HOUR_MS for a in fake.klines_asked()]


@pytest.fixture
def catalog(tmp_path: Path) -> DataCatalog:
    return DataCatalog(tmp_path / "data")


@pytest.fixture
def write_csv(tmp_path: Path):
    def write() -> Path:
        path = tmp_path / "acme.csv"
        path.write_text("time,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n")
        return path

    return write


async def test_fetch_when_new_symbol_then_closed_bars_stored_with_their_feed(binance, catalog):
    summary = await _run(binance, catalog)

    stored = catalog.load("BTC/USDT")
    assert len(stored) == 100  # hours 0..99; hour 100 is still forming
    assert stored.index[-1] == START + pd.Timedelta(hours=99)
    assert stored.loc[START, "open"] == pytest.approx(binance.series().bar(0)[1])
    entry = catalog.fetched_entry("BTC/USDT")
    assert entry is not None
    assert (entry.feed, entry.timeframe, entry.count) == ("ccxt:binance", H1, 100)
    assert str(summary).startswith("fetched 100 1h bars of BTC/USDT (1 request to ccxt:binance)")


async def test_fetch_again_when_venue_moved_on_then_asks_only_for_the_new_bars(binance, catalog):
    await _run(binance, catalog)
    binance.clock.advance(5 * 3600)
    binance.requests.clear()

    summary = await _run(binance, catalog)

    assert _starts(binance) == [100]
    assert summary.fetched == 5
    assert len(catalog.load("BTC/USDT")) == 105


async def test_fetch_again_when_nothing_new_then_up_to_date_and_nothing_written(binance, catalog):
    await _run(binance, catalog)
    written = catalog.bars_dir.joinpath("BTC%2FUSDT.parquet").stat().st_mtime_ns

    summary = await _run(binance, catalog)

    assert str(summary) == ("BTC/USDT is up to date: ccxt:binance has no new closed 1h bars")
    assert catalog.bars_dir.joinpath("BTC%2FUSDT.parquet").stat().st_mtime_ns == written


async def test_fetch_when_since_before_stored_bars_then_fills_before_and_after(binance, catalog):
    await _run(binance, catalog, since=START + pd.Timedelta(hours=50))
    binance.clock.advance(2 * 3600)
    binance.requests.clear()

    summary = await _run(binance, catalog)

    assert _starts(binance) == [0, 100]  # before hour 50 stops there; after: from hour 100
    assert summary.fetched == 52
    stored = catalog.load("BTC/USDT")
    assert len(stored) == 102
    assert stored.index.is_unique


async def test_fetch_when_venue_has_gaps_then_reported_not_filled(binance, catalog):
    binance.series().gaps |= {ORIGIN_MS + h * HOUR_MS for h in (10, 11, 12, 40)}

    summary = await _run(binance, catalog)

    assert len(catalog.load("BTC/USDT")) == 96
    assert summary.missing == 4
    assert summary.largest_gap == (START + pd.Timedelta(hours=9), START + pd.Timedelta(hours=13))
    assert "4 bars missing (the venue has none; left as gaps" in str(summary)


async def test_fetch_when_bad_bar_then_data_error_and_nothing_stored(binance, catalog):
    await _run(binance, catalog)
    binance.clock.advance(3 * 3600)
    binance.series().corrupt[ORIGIN_MS + 101 * HOUR_MS] = {2: 0.5}

    with pytest.raises(DataError, match=r"bar 2024-01-05 05:00:00 UTC: high 0\.5 is below low"):
        await _run(binance, catalog)

    assert len(catalog.load("BTC/USDT")) == 100


async def test_fetch_when_venue_fails_midway_then_keeps_pages_and_resumes(catalog):
    fake = FakeBinanceFeed(VenueClock(ORIGIN_MS + 2500 * HOUR_MS))
    fake.start()
    try:
        fake.fail("/api/v3/klines", "500", times=3, after=1)  # the second page, and its retries
        with pytest.raises(FeedUnavailableError) as failed:
            await _run(fake, catalog, retries=2)
        assert "stored the 1,000 bars fetched before, up to 2024-02-11 15:00:00 UTC" in str(
            failed.value
        )
        assert len(catalog.load("BTC/USDT")) == 1000
        fake.requests.clear()

        summary = await _run(fake, catalog)
    finally:
        fake.stop()

    assert _starts(fake) == [1000, 2000]
    assert summary.fetched == 1500
    assert len(catalog.load("BTC/USDT")) == 2500


async def test_fetch_when_older_span_fails_then_stores_none_of_it(binance, catalog):
    await _run(binance, catalog, since=START + pd.Timedelta(hours=50))
    binance.fail("/api/v3/klines", "500", times=3)

    with pytest.raises(FeedUnavailableError, match="failed 3 times"):
        await _run(binance, catalog, since=START)

    assert catalog.load("BTC/USDT").index[0] == START + pd.Timedelta(hours=50)


async def test_fetch_when_stored_symbol_has_other_timeframe_or_origin_then_says_use_as(
    binance, catalog, write_csv
):
    await _run(binance, catalog)
    feed = open_feed("ccxt:binance", options(binance.api_url))
    catalog.import_file(write_csv(), "ACME")
    try:
        with pytest.raises(DataError, match=r"holds 1h bars from ccxt:binance.*--as NAME"):
            await fetch_into_catalog(catalog, feed, "BTC/USDT", Timeframe.parse("1d"), START)
        with pytest.raises(DataError, match=r"'ACME' holds 1d bars from acme.csv.*--as NAME"):
            await fetch_into_catalog(catalog, feed, "BTC/USDT", H1, START, store_as="ACME")
        with pytest.raises(DataError, match="bundled dataset"):
            await fetch_into_catalog(catalog, feed, "BTC/USDT", H1, START, store_as="SP500")
        with pytest.raises(DataError, match="differs only in case"):
            await fetch_into_catalog(catalog, feed, "BTC/USDT", H1, START, store_as="btc/usdt")
        with pytest.raises(DataError, match="is not allowed: use up to 64 letters"):
            await fetch_into_catalog(catalog, feed, "BTC/USDT", H1, START, store_as="BTC USDT")
    finally:
        await feed.close()
    assert binance.count("/api/v3/klines") == 1  # refused before asking the venue


async def test_fetch_when_progress_watched_then_reports_up_to_the_total(binance, catalog):
    seen: list[tuple[int, int]] = []

    await _run(binance, catalog, progress=lambda done, total: seen.append((done, total)))

    assert seen[0] == (0, 101)  # hours 0 to the venue's now, 100.5 h later
    assert seen[-1] == (101, 101)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize("text", ["yesterday-ish", "2024-13-01", ""])
def test_parse_time_when_not_a_date_then_says_how_to_write_one(text):
    with pytest.raises(DataError, match=r"--since .* is not a date: write it like 2024-01-01"):
        parse_time(text, "--since")


def test_parse_time_when_date_then_midnight_utc():
    assert parse_time("2024-01-02", "--since") == pd.Timestamp("2024-01-02", tz="UTC")
