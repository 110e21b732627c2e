"""``ffe data import`` and ``ffe data list`` end to end, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ffe.cli.data import data_app

try:
    from ffe.cli.app import app
except ImportError:  # the main app is wired separately; the data commands stand alone
    app = typer.Typer()
    app.add_typer(data_app, name="data")

BARS = """time,open,high,low,close,volume
2024-01-02,100,101,99,100.5,1000
2024-01-03,100.5,102,100,101.5,1100
2024-01-04,101.5,103,101,102,1200
"""

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FFE_CONFIG_DIR", str(tmp_path))  # no config.yaml from elsewhere
    return tmp_path / "data"


def _csv(tmp_path: Path, text: str = BARS, name: str = "acme.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_data_import_when_valid_then_one_line_summary_and_stored(data_dir, tmp_path):
    result = runner.invoke(app, ["data", "import", str(_csv(tmp_path)), "--symbol", "ACME"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "imported ACME: 3 1d bars from 2024-01-02 to 2024-01-04 (acme.csv)"
    )
    assert (data_dir / "bars" / "ACME.parquet").is_file()


def test_data_import_when_bad_data_then_exit_2_and_message_names_line(data_dir, tmp_path):
    path = _csv(tmp_path, BARS.replace("102,100,101.5", "99,100,101.5"))

    result = runner.invoke(app, ["data", "import", str(path), "--symbol", "ACME"])

    assert result.exit_code == 2
    assert f"{path}:3: high 99 is below low 100" in result.stderr
    assert "Traceback" not in result.output
    assert not data_dir.exists()


def test_data_import_when_symbol_exists_then_exit_2_unless_replace(data_dir, tmp_path):
    args = ["data", "import", str(_csv(tmp_path)), "--symbol", "ACME", "--timeframe", "1d"]
    runner.invoke(app, args)

    refused = runner.invoke(app, args)
    replaced = runner.invoke(app, [*args, "--replace"])

    assert refused.exit_code == 2
    assert "pass --replace" in refused.stderr
    assert replaced.exit_code == 0
    assert replaced.stdout.startswith("replaced ACME")


def test_data_list_then_table_shows_bundled_and_imported(data_dir, tmp_path):
    runner.invoke(app, ["data", "import", str(_csv(tmp_path)), "-s", "BTC/USDT"])

    result = runner.invoke(app, ["data", "list"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    btc = next(line for line in lines if "BTC/USDT" in line)
    sp500 = next(line for line in lines if "SP500" in line)
    assert all(word in btc for word in ("1d", "2024-01-02", "2024-01-04", "3", "imported"))
    assert all(word in sp500 for word in ("1999-01-04", "2018-12-31", "5,031", "bundled"))


def test_data_list_json_then_parseable_list_of_entries(data_dir, tmp_path):
    runner.invoke(app, ["data", "import", str(_csv(tmp_path)), "-s", "ACME"])

    result = runner.invoke(app, ["data", "list", "--json"])

    entries = {entry["symbol"]: entry for entry in json.loads(result.stdout)}
    assert sorted(entries) == ["ACME", "NASDAQ", "SP500"]
    assert entries["ACME"]["count"] == 3
    assert entries["ACME"]["first"] == "2024-01-02T00:00:00+00:00"
    assert entries["ACME"]["source"] == "imported"
    assert entries["SP500"]["count"] == 5031


def _bundled_daily_csv(tmp_path: Path, bars: int = 30) -> Path:
    """The first ``bars`` of the bundled S&P 500, written as a CSV as a user would export it."""
    from ffe.data.bundled import _load

    frame = _load("SP500").iloc[:bars]
    path = tmp_path / "sp500_daily.csv"
    frame.rename_axis("Date").to_csv(path, date_format="%Y-%m-%d")
    return path


def test_data_import_when_daily_bars_declared_hourly_then_refused_naming_the_spacing(
    data_dir, tmp_path
):
    path = _bundled_daily_csv(tmp_path)

    result = runner.invoke(app, ["data", "import", str(path), "-s", "SPX", "--timeframe", "1h"])

    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "the bars are 1d apart or more" in message
    assert "wider than the declared timeframe 1h: declare the timeframe 1d (--timeframe 1d)" in (
        message
    )
    assert not [p for p in data_dir.rglob("*") if "SPX" in p.name]
    listed = runner.invoke(app, ["data", "list", "--json"])
    assert "SPX" not in listed.stdout


def test_data_import_when_daily_bars_declared_daily_then_weekends_pass(data_dir, tmp_path):
    path = _bundled_daily_csv(tmp_path)

    result = runner.invoke(app, ["data", "import", str(path), "-s", "SPX", "--timeframe", "1d"])

    assert result.exit_code == 0, result.output
    assert "imported SPX: 30 1d bars" in result.output


def test_data_import_when_few_bars_over_a_weekend_then_not_judged_too_wide(data_dir, tmp_path):
    text = "time,open,high,low,close\n2024-01-05,1,1,1,1\n2024-01-08,1,1,1,1\n"

    result = runner.invoke(app, ["data", "import", str(_csv(tmp_path, text)), "-s", "TWO"])

    assert result.exit_code == 0, result.output
