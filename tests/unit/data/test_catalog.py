"""The data catalog: imports are validated, atomic, and listed next to the bundled data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ffe.data import DataCatalog
from ffe.domain import DataError, Timeframe


@pytest.fixture
def catalog(tmp_path: Path) -> DataCatalog:
    return DataCatalog(tmp_path / "data")


def _listing(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content, to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_import_csv_when_valid_then_loaded_values_equal_input(catalog, write_bars, good_rows):
    path = write_bars(*good_rows)

    summary = catalog.import_file(path, "ACME", "1d")
    loaded = catalog.load("ACME")

    expected = pd.read_csv(path, index_col="time", parse_dates=True)
    assert loaded.to_numpy().tolist() == expected.astype(float).to_numpy().tolist()
    assert loaded.index.equals(expected.index.tz_localize("UTC").rename("time"))
    assert (summary.count, summary.source_file, summary.replaced) == (4, "bars.csv", False)
    assert summary.first == datetime(2024, 1, 2, tzinfo=UTC)
    assert summary.last == datetime(2024, 1, 5, tzinfo=UTC)


def test_import_parquet_when_valid_then_loaded_values_equal_input(catalog, tmp_path):
    index = pd.date_range("2024-01-02 09:00", periods=6, freq="h", tz="UTC", name="time")
    frame = pd.DataFrame(
        {"open": 10.0, "high": 12.5, "low": 9.25, "close": [10.0, 11, 12, 11, 10, 9.5]},
        index=index,
    ).assign(volume=[1.0, 2, 3, 4, 5, 6])
    frame.to_parquet(tmp_path / "in.parquet")

    catalog.import_file(tmp_path / "in.parquet", "ETH-USD", Timeframe.parse("1h"))

    pd.testing.assert_frame_equal(catalog.load("ETH-USD"), frame.astype(float), check_freq=False)
    assert catalog.timeframe("ETH-USD") == Timeframe(1, "h")


def test_import_when_valid_then_stored_as_parquet_with_metadata(catalog, write_bars, good_rows):
    catalog.import_file(write_bars(*good_rows), "ACME", "1d")

    [stored] = catalog.bars_dir.iterdir()
    schema = pq.read_schema(stored)
    assert stored.name == "ACME.parquet"
    assert b'"symbol": "ACME"' in schema.metadata[b"ffe.bars"]
    assert b'"source_file": "bars.csv"' in schema.metadata[b"ffe.bars"]


def test_import_when_data_invalid_then_nothing_left_behind(
    catalog, write_bars, good_rows, tmp_path
):
    catalog.import_file(write_bars(*good_rows), "ACME", "1d")
    before = _listing(tmp_path / "data")
    good_rows[2] = "2024-01-04,101.5,100,101,102,1200"

    with pytest.raises(DataError, match=r":4: high 100 is below low 101"):
        catalog.import_file(write_bars(*good_rows, name="bad.csv"), "OTHER", "1d")
    with pytest.raises(DataError):
        catalog.import_file(write_bars(*good_rows, name="bad.csv"), "ACME", "1d", replace=True)

    assert _listing(tmp_path / "data") == before
    assert catalog.load("ACME")["high"].iloc[2] == 103.0


def test_import_when_first_import_fails_then_no_directory_created(catalog, write_bars, tmp_path):
    with pytest.raises(DataError):
        catalog.import_file(write_bars("2024-01-02,1,0.5,2,1,1"), "ACME", "1d")

    assert not (tmp_path / "data").exists()


def test_import_when_write_fails_then_no_temp_file_and_old_data_intact(
    catalog, write_bars, good_rows, monkeypatch
):
    catalog.import_file(write_bars(*good_rows), "ACME", "1d")
    before = _listing(catalog.bars_dir)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(DataError, match="cannot write imported bars"):
        catalog.import_file(write_bars(*good_rows[:2]), "ACME", "1d", replace=True)

    assert _listing(catalog.bars_dir) == before


def test_import_when_symbol_exists_then_error_says_pass_replace(catalog, write_bars, good_rows):
    catalog.import_file(write_bars(*good_rows), "ACME", "1d")

    with pytest.raises(DataError, match="already imported: pass --replace"):
        catalog.import_file(write_bars(*good_rows[:2]), "ACME", "1d")
    summary = catalog.import_file(write_bars(*good_rows[:2]), "ACME", "1d", replace=True)

    assert summary.replaced
    assert len(catalog.load("ACME")) == 2


@pytest.mark.parametrize("symbol", ["SP500", "NASDAQ", "sp500"])
def test_import_when_symbol_is_bundled_then_refused(catalog, write_bars, good_rows, symbol):
    with pytest.raises(DataError, match="bundled dataset"):
        catalog.import_file(write_bars(*good_rows), symbol, "1d", replace=True)

    assert not catalog.bars_dir.exists()


@pytest.mark.parametrize("symbol", ["", "../etc", "A B", "x" * 65, "/ABS", "EUR:USD"])
def test_import_when_symbol_name_invalid_then_refused(catalog, write_bars, good_rows, symbol):
    with pytest.raises(DataError, match="is not allowed"):
        catalog.import_file(write_bars(*good_rows), symbol, "1d")


def test_import_when_symbol_has_slash_then_safe_file_and_distinct_from_underscore(
    catalog, write_bars, good_rows
):
    catalog.import_file(write_bars(*good_rows), "BTC/USDT", "1d")
    catalog.import_file(write_bars(*good_rows[:3]), "BTC_USDT", "1d")

    assert sorted(p.name for p in catalog.bars_dir.iterdir()) == [
        "BTC%2FUSDT.parquet",
        "BTC_USDT.parquet",
    ]
    assert (len(catalog.load("BTC/USDT")), len(catalog.load("BTC_USDT"))) == (4, 3)


def test_import_when_symbol_differs_only_in_case_then_refused(catalog, write_bars, good_rows):
    catalog.import_file(write_bars(*good_rows), "Acme", "1d")

    with pytest.raises(DataError, match="differs only in case from 'Acme'"):
        catalog.import_file(write_bars(*good_rows), "ACME", "1d", replace=True)


def test_list_entries_when_imported_then_bundled_and_imported_listed(
    catalog, write_bars, good_rows
):
    catalog.import_file(write_bars(*good_rows), "ACME", "1d")

    entries = {entry.symbol: entry for entry in catalog.list_entries()}

    assert sorted(entries) == ["ACME", "NASDAQ", "SP500"]
    acme, sp500 = entries["ACME"], entries["SP500"]
    assert (acme.source, acme.count, str(acme.timeframe)) == ("imported", 4, "1d")
    assert (acme.first, acme.source_file) == (datetime(2024, 1, 2, tzinfo=UTC), "bars.csv")
    assert (sp500.source, sp500.count, sp500.first.year, sp500.last.year) == (
        "bundled",
        5031,
        1999,
        2018,
    )


def test_load_when_symbol_unknown_then_error_lists_available(catalog, write_bars, good_rows):
    catalog.import_file(write_bars(*good_rows), "ACME", "1d")

    with pytest.raises(DataError, match="available symbols are ACME, NASDAQ, SP500"):
        catalog.load("NOPE")


def test_symbols_when_nothing_imported_then_only_bundled(catalog):
    assert catalog.symbols() == ["NASDAQ", "SP500"]
    assert catalog.load("SP500")["close"].iloc[0] == pytest.approx(1228.099976)


def _bars(hours: int, start: str = "2024-01-01") -> pd.DataFrame:
    index = pd.date_range(start, periods=hours, freq="h", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1.0}, index=index
    )


def test_store_fetched_when_new_then_listed_with_its_feed(catalog):
    summary = catalog.store_fetched(_bars(3), "BTC/USDT", Timeframe.parse("1h"), feed="ccxt:x")

    entry = catalog.fetched_entry("BTC/USDT")
    assert entry is not None
    assert (entry.feed, entry.count, entry.source_file) == ("ccxt:x", 3, "ccxt:x")
    assert summary.count == 3
    assert not summary.replaced
    assert len(catalog.load("BTC/USDT")) == 3


def test_store_fetched_when_bars_invalid_then_stored_ones_untouched(catalog):
    hour = Timeframe.parse("1h")
    catalog.store_fetched(_bars(3), "BTC/USDT", hour, feed="ccxt:x")
    before = _listing(catalog.bars_dir)
    broken = _bars(4)
    broken.iloc[2, broken.columns.get_loc("high")] = 1.0

    with pytest.raises(DataError, match="high 1 is below low 9"):
        catalog.store_fetched(broken, "BTC/USDT", hour, feed="ccxt:x")

    assert _listing(catalog.bars_dir) == before


def test_store_fetched_when_symbol_from_another_feed_or_file_then_refused(
    catalog, write_bars, good_rows
):
    hour = Timeframe.parse("1h")
    catalog.store_fetched(_bars(3), "BTC/USDT", hour, feed="ccxt:x")
    catalog.import_file(write_bars(*good_rows), "ACME")

    with pytest.raises(DataError, match=r"holds 1h bars from ccxt:x: .*--as NAME"):
        catalog.store_fetched(_bars(3), "BTC/USDT", hour, feed="ccxt:y")
    with pytest.raises(DataError, match=r"holds 1d bars from bars.csv"):
        catalog.store_fetched(_bars(3), "ACME", Timeframe.parse("1d"), feed="ccxt:x")


def test_fetched_entry_when_absent_then_none(catalog):
    assert catalog.fetched_entry("BTC/USDT") is None
