"""Recording a Kalshi market (bars and settlement) from a local trade API v2 server, and
backtesting it to its settlement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.support.fake_kalshi import FakeKalshi, Fault

from ffe import bootstrap
from ffe.backtest.engine import run_backtest
from ffe.config import Settings
from ffe.data import DataCatalog, LiveFeed
from ffe.data.feed import FeedUnavailableError
from ffe.data.kalshi import KalshiSource, load_contract, record_market
from ffe.domain import DataError, Timeframe
from ffe.service import backtests
from ffe.service.backtests import BacktestRequest
from ffe.service.markets import MarketSpec

NYC = "KXRAIN-26DEC08-NYC"
HOUR = Timeframe.parse("1h")
START = pd.Timestamp("2026-11-01T00:00:00Z")


def candle(end: pd.Timestamp, cents: int | None, volume: int = 10) -> dict[str, object]:
    """A candlestick ending at ``end``; without ``cents`` no trade, quotes around 50."""
    price = {k: cents for k in ("open", "high", "low", "close")} if cents else {"close": None}
    bid = {k: 48 for k in ("open", "high", "low", "close")}
    ask = {k: 52 for k in ("open", "high", "low", "close")}
    return {
        "end_period_ts": int(end.timestamp()),
        "price": price,
        "yes_bid": bid,
        "yes_ask": ask,
        "volume": volume if cents else 0,
        "open_interest": 100,
    }


@pytest.fixture
def fake() -> Iterator[FakeKalshi]:
    server = FakeKalshi({})
    server.markets[NYC]["open_time"] = START.isoformat()
    prices = [40, 42, None, 45, 50, 55, 60, 62]
    server.candles[NYC] = [
        candle(START + pd.Timedelta(hours=i + 1), cents) for i, cents in enumerate(prices)
    ]
    server.start()
    yield server
    server.stop()
    assert not server.errors, "\n".join(server.errors)


@pytest.fixture
async def source(fake: FakeKalshi) -> AsyncIterator[KalshiSource]:
    feed = KalshiSource(fake.url, max_retries=2, backoff_s=0.005, page_bars=3)
    yield feed
    await feed.close()


async def test_source_is_a_live_feed_of_closed_bars_in_unit_prices(source: KalshiSource) -> None:
    frame = await source.fetch(NYC, HOUR, START, limit=3)

    assert isinstance(source, LiveFeed)
    assert frame.index[0] == START  # a bar's time is its period's start
    assert frame["close"].tolist() == [0.40, 0.42, 0.50]  # no trade: the bid/ask midpoint
    assert frame["volume"].tolist() == [10.0, 10.0, 0.0]


async def test_source_when_market_archived_then_read_from_historical_endpoints_in_dollars(
    source: KalshiSource, fake: FakeKalshi
) -> None:
    fake.archived.add(NYC)

    frame = await source.fetch(NYC, HOUR, START, limit=3)

    assert frame["close"].tolist() == [0.40, 0.42, 0.50]
    assert frame["volume"].tolist() == [10.0, 10.0, 0.0]
    assert fake.count("GET", f"/historical/markets/{NYC}/candlesticks") == 1


async def test_source_when_timeframe_unsupported_or_market_unknown_then_data_error(
    source: KalshiSource,
) -> None:
    with pytest.raises(DataError, match="1m, 1h and 1d"):
        await source.fetch(NYC, Timeframe.parse("4h"))
    with pytest.raises(DataError, match="no market 'KXNOPE-1', live or historical"):
        await source.fetch("KXNOPE-1", HOUR)


async def test_source_when_venue_keeps_failing_then_feed_unavailable(
    source: KalshiSource, fake: FakeKalshi
) -> None:
    fake.inject(Fault("GET", "/exchange/status", status=503, times=5))

    with pytest.raises(FeedUnavailableError, match="failed 3 times"):
        await source.fetch(NYC, HOUR)


async def test_record_market_stores_bars_and_settlement_beside_them(
    source: KalshiSource, fake: FakeKalshi, tmp_path: Path
) -> None:
    fake.settle(NYC, "yes")
    fake.markets[NYC]["close_time"] = (START + pd.Timedelta(hours=8)).isoformat()
    catalog = DataCatalog(tmp_path)

    recorded = await record_market(catalog, source, NYC, "1h")

    assert recorded.bars.count == 8  # paged three bars at a time
    assert catalog.load(NYC)["close"].iloc[-1] == pytest.approx(0.62)
    contract = load_contract(tmp_path, NYC)
    assert contract is not None
    assert (contract.event, contract.result) == ("KXRAIN-26DEC08", "yes")
    assert "settled yes" in str(recorded)
    assert load_contract(tmp_path, "AAPL") is None
    with pytest.raises(DataError, match="no closed 1h bars of KXRAIN-26DEC08-SF"):
        await record_market(catalog, source, "KXRAIN-26DEC08-SF", "1h")


async def test_backtest_of_recorded_market_ends_settled_at_result(
    source: KalshiSource, fake: FakeKalshi, tmp_path: Path
) -> None:
    fake.settle(NYC, "yes")
    fake.markets[NYC]["close_time"] = (START + pd.Timedelta(hours=8)).isoformat()
    await record_market(DataCatalog(tmp_path), source, NYC, "1h")
    components = bootstrap.components(Settings(data={"dir": str(tmp_path)}))
    params = {"probability": 0.7, "margin": 0.05, "stake": 0.5}
    request = BacktestRequest("binary_edge", params, MarketSpec(symbols=(NYC,)), record=False)

    settled = backtests.run(components, request).result
    plain = run_backtest(settled.market, settled.strategy, settled.config)

    held = plain.open_positions()[NYC]
    assert held > 0
    assert settled.open_positions() == {}
    assert settled.equity[-1] == pytest.approx(plain.ledger.cash + held * 1.0)
    assert np.array_equal(settled.equity[:-1], plain.equity[:-1])  # only the last bar moves
    assert settled.trades[-1].exit_price == 1.0


def test_data_fetch_when_source_kalshi_then_records_bars_and_contract(
    fake: FakeKalshi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ffe.cli.app import app

    fake.settle(NYC, "no")
    fake.markets[NYC]["close_time"] = (START + pd.Timedelta(hours=8)).isoformat()
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path))
    args = ["data", "fetch", "--source", "kalshi", "--symbol", NYC, "--timeframe", "1h"]

    done = CliRunner().invoke(app, [*args, "--since", "2026-11-01", "--api-url", fake.url])
    bad = CliRunner().invoke(app, [*args, "--since", "2026-11-01", "--api-url", "ftp://x"])

    assert done.exit_code == 0, done.output
    assert "settled no" in done.output
    assert DataCatalog(tmp_path).load(NYC)["close"].iloc[-1] == pytest.approx(0.62)
    contract = load_contract(tmp_path, NYC)
    assert contract is not None
    assert contract.result == "no"
    assert bad.exit_code == 2
    assert "is not an http(s) URL" in bad.output
