"""``ffe data fetch`` through the command line, against a local Binance."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.feeds.conftest import HOUR_MS
from tests.support.fake_binance import FakeBinanceFeed
from typer.testing import CliRunner

from ffe.cli.app import app
from ffe.data import DataCatalog

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FFE_CONFIG_DIR", str(tmp_path))  # no config.yaml from elsewhere
    monkeypatch.setenv("FFE__DATA__FEED_RETRIES", "1")
    monkeypatch.setenv("FFE__DATA__FEED_BACKOFF_S", "0.01")
    return tmp_path / "data"


def _fetch(fake: FakeBinanceFeed, *extra: str):
    return runner.invoke(
        app,
        ["data", "fetch", "--source", "ccxt:binance", "--symbol", "BTC/USDT", "--timeframe",
         "1h", "--since", "2024-01-01", "--api-url", fake.api_url, *extra],
    )  # fmt: skip


def test_data_fetch_when_run_twice_then_second_run_fetches_only_new_bars(binance, data_dir):
    first = _fetch(binance)
    binance.clock.advance(2 * 3600)
    binance.requests.clear()
    second = _fetch(binance)

    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("fetched 100 1h bars of BTC/USDT (1 request to ccxt:binance)")
    assert second.exit_code == 0, second.output
    assert second.stdout.strip() == (
        "fetched 2 1h bars of BTC/USDT (1 request to ccxt:binance); BTC/USDT now holds 102 "
        "bars from 2024-01-01 to 2024-01-05 05:00:00 UTC"
    )
    assert [int(a["startTime"]) for a in binance.klines_asked()] == [
        binance.origin_ms + 100 * HOUR_MS
    ]
    assert len(DataCatalog(data_dir).load("BTC/USDT")) == 102


def test_data_fetch_when_stored_then_data_list_shows_it(binance, data_dir):
    _fetch(binance, "--as", "BTCUSDT-1H", "--quiet")

    listed = runner.invoke(app, ["data", "list", "--json"])

    assert listed.exit_code == 0, listed.output
    assert '"symbol": "BTCUSDT-1H"' in listed.stdout
    assert '"source_file": "ccxt:binance"' in listed.stdout


def test_data_fetch_when_venue_down_then_exit_1_and_try_later(binance, data_dir):
    binance.fail("/api/v3/klines", "500", times=5)

    result = _fetch(binance)

    assert result.exit_code == 1
    assert "ccxt:binance: fetch BTC/USDT 1h candles failed 2 times" in result.stderr
    assert "try again later" in result.stderr
    assert not (data_dir / "bars").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "--since 'soon' is not a date"),
        (["--timeframe", "1M"], "timeframe '1M' is ambiguous"),
        (["--api-url", "ftp://x"], "--api-url 'ftp://x' is not an http(s) URL"),
        (["--source", "yahoo"], "unknown source 'yahoo'"),
        (["--until", "2023-12-31"], "--until 2023-12-31 is not after --since 2024-01-01"),
    ],
)
def test_data_fetch_when_bad_option_then_exit_2_says_what_to_fix(binance, data_dir, args, message):
    result = _fetch(binance, *args)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert binance.count("/api/v3/klines") == 0
