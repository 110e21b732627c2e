"""Backtests recorded by `ffe backtest run`, and `ffe runs list | show | compare | report`,
on the embedded SQLite journal and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
# A short slice keeps each run quick; the journal does not care how long it is.
RUN = ["backtest", "run", "--symbol", "SP500", "--start", "2015-01-01", "--end", "2016-12-31"]


@pytest.fixture
def journal(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FFE__DATABASE__URL", database_url)
    monkeypatch.setenv("FFE__DATABASE__AUTO_UPGRADE", "always")
    return database_url


def _invoke(*args: str) -> object:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _backtest(*params: str) -> dict:
    flags = [part for p in params for part in ("--param", p)]
    result = runner.invoke(app, [*RUN, *flags, "--commission", "0.001", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_backtest_run_when_recorded_then_runs_show_returns_same_stats_and_trades(journal):
    printed = _backtest("fast=10", "slow=20")

    shown = json.loads(_invoke("runs", "show", printed["run_id"][:8], "--json").stdout)

    assert shown["id"] == printed["run_id"]
    assert shown["status"] == "finished"
    assert shown["strategy"] == "sma_cross"
    assert shown["params"] == {"fast": 10, "slow": 20}
    assert shown["stats"] == printed["stats"]
    assert shown["trades"] == printed["trades"]
    assert len(shown["data_fingerprint"]) == 64
    assert shown["code_version"].startswith("0.")
    assert shown["config"]["fill"]["commission"] == 0.001
    assert len(shown["equity"]["values"]) == shown["config"]["bars"]


def test_runs_list_when_two_runs_then_newest_first_with_stats(journal):
    first = _backtest("fast=10", "slow=20")["run_id"]
    second = _backtest("fast=5", "slow=30")["run_id"]

    listed = json.loads(_invoke("runs", "list", "--json").stdout)
    table = _invoke("runs", "list").stdout

    assert [r["id"] for r in listed] == [second, first]
    assert listed[0]["params"] == {"fast": 5, "slow": 30}
    assert second[:8] in table


def test_runs_compare_when_same_data_then_differences_per_stat(journal):
    a = _backtest("fast=10", "slow=20")
    b = _backtest("fast=5", "slow=30")

    compared = json.loads(_invoke("runs", "compare", a["run_id"], b["run_id"], "--json").stdout)

    assert compared["same_data"] is True
    assert compared["same_code"] is True
    ret = compared["stats"]["total_return"]
    assert ret["a"] == a["stats"]["total_return"]
    assert ret["b"] == b["stats"]["total_return"]
    assert ret["diff"] == pytest.approx(ret["b"] - ret["a"])
    assert "b - a" in _invoke("runs", "compare", a["run_id"], b["run_id"]).stdout


def test_runs_report_when_regenerated_then_same_trades_and_stats_as_original(
    journal, tmp_path: Path
):
    original = tmp_path / "original.html"
    result = runner.invoke(app, [*RUN, "--report", str(original), "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    redrawn = tmp_path / "redrawn.html"

    _invoke("runs", "report", run_id, "--output", str(redrawn))

    first, second = original.read_text(), redrawn.read_text()
    # Same statistics section and trades table; only the subtitle (run id, code) differs.
    for marker in ("Statistics", "Trades ("):
        start = first.index(marker)
        assert second[second.index(marker) :][:4000] == first[start:][:4000]


def test_runs_show_when_id_unknown_then_clear_error(journal):
    result = runner.invoke(app, ["runs", "show", "deadbeef"])

    assert result.exit_code == 2
    assert "no run 'deadbeef'" in result.output


def test_backtest_run_when_no_record_then_journal_untouched(journal):
    result = runner.invoke(app, [*RUN, "--no-record", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] is None
    assert json.loads(_invoke("runs", "list", "--json").stdout) == []


def test_backtest_run_when_database_unreachable_then_result_shown_and_clear_error(
    monkeypatch: pytest.MonkeyPatch,
):
    # Port 9 (discard) has nothing listening: the journal is down, the backtest is not lost.
    monkeypatch.setenv("FFE__DATABASE__URL", "postgresql://ffe:secret@127.0.0.1:9/ffe")

    result = runner.invoke(app, [*RUN, "--json"])

    assert result.exit_code == 2
    assert json.loads(result.stdout)["stats"]["n_trades"] > 0
    assert "the run was not recorded" in result.stderr
    assert "is the server running" in result.stderr
    assert "secret" not in result.output


def test_backtest_run_when_default_journal_then_sqlite_file_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))

    run_id = _backtest("fast=10", "slow=20")["run_id"]

    assert (tmp_path / "data" / "ffe.db").is_file()
    assert run_id[:8] in _invoke("runs", "list").stdout
    assert "up to date" in _invoke("db", "current").stdout
