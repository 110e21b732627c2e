"""``ffe runs list`` and ``ffe runs show --trades`` in an 80-column terminal: no line wider,
ids and dates never cut."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
NARROW = {"COLUMNS": "80"}
RUN = ["backtest", "run", "--start", "2014-01-01", "--end", "2016-12-31", "--json"]
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _backtest(*args: str) -> dict:
    result = runner.invoke(app, [*RUN, *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _narrow(*args: str) -> list[str]:
    result = runner.invoke(app, list(args), env=NARROW)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_runs_list_when_80_columns_then_every_line_fits_and_ids_whole():
    runs = [
        _backtest("--symbol", "SP500", "--symbol", "NASDAQ", "-p", "fast=12", "-p", "slow=48"),
        _backtest("--symbol", "SP500", "-p", "fast=5", "-p", "slow=30"),
    ]

    lines = _narrow("runs", "list")

    assert max(len(line) for line in lines) <= 80
    for run in runs:
        assert any(line.startswith(run["run_id"][:8]) for line in lines)
    assert "fast=12" in " ".join(lines)


def test_runs_show_trades_when_80_columns_then_every_line_fits_and_dates_whole():
    run = _backtest("--symbol", "SP500", "--symbol", "NASDAQ", "-p", "fast=5", "-p", "slow=10")

    lines = _narrow("runs", "show", run["run_id"][:8], "--trades")

    assert max(len(line) for line in lines) <= 80
    trade_rows = [line for line in lines if len(DATE.findall(line)) == 2]
    assert len(trade_rows) == len(run["trades"]) > 0
    assert all(line.split()[0] in ("SP500", "NASDAQ") for line in trade_rows)
