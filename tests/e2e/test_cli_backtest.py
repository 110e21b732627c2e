from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


def test_backtest_run_when_demo_then_table_and_report(tmp_path: Path) -> None:
    report = tmp_path / "out" / "demo.html"

    result = runner.invoke(
        app,
        [
            "backtest",
            "run",
            "--strategy",
            "sma_cross",
            "--symbol",
            "SP500",
            "--param",
            "fast=10",
            "--param",
            "slow=20",
            "--cash",
            "10000",
            "--commission",
            "0.002",
            "--report",
            str(report),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "sharpe" in result.output
    assert "n trades" in result.output
    html = report.read_text(encoding="utf-8")
    assert "sma_cross" in html
    assert html.lstrip().lower().startswith("<!doctype html")


def test_backtest_run_when_json_then_stats_and_every_trade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FFE__RISK__MAX_DRAWDOWN", "none")  # every trade of 1999-2018, no halt
    result = runner.invoke(
        app,
        [
            "backtest",
            "run",
            "--symbol",
            "NASDAQ",
            "--param",
            "fast=20",
            "--param",
            "slow=50",
            "--cash",
            "1000000",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stats"]["n_trades"] == len(data["trades"]) > 10
    first = data["trades"][0]
    assert set(first) >= {
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "direction",
        "size",
        "pnl",
    }
    assert first["entry_time"] < first["exit_time"]


def test_backtest_run_when_unknown_strategy_then_exit_2_with_choices() -> None:
    result = runner.invoke(app, ["backtest", "run", "--strategy", "nope"])

    assert result.exit_code == 2
    assert "available: binary_edge, buy_and_hold, ensemble, momentum, sma_cross" in result.output


def test_backtest_run_when_bad_param_syntax_then_exit_2() -> None:
    result = runner.invoke(app, ["backtest", "run", "--param", "fast10"])

    assert result.exit_code == 2
    assert "name=value" in result.output


def test_backtest_run_when_unknown_symbol_then_exit_2_naming_it() -> None:
    result = runner.invoke(app, ["backtest", "run", "--symbol", "NOPE"])

    assert result.exit_code == 2
    assert "NOPE" in result.output


def test_backtest_run_when_synthetic_momentum_then_runs() -> None:
    result = runner.invoke(
        app,
        [
            "backtest",
            "run",
            "--strategy",
            "momentum",
            "--synthetic",
            "20",
            "--bars",
            "300",
            "--param",
            "lookback=50",
            "--param",
            "rebalance=10",
            "--cash",
            "1000000",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["symbols"]) == 20


def test_backtest_sweep_when_grid_then_sorted_rows_and_heatmap(tmp_path: Path) -> None:
    report = tmp_path / "sweep.html"

    result = runner.invoke(
        app,
        [
            "backtest",
            "sweep",
            "--symbol",
            "SP500",
            "-p",
            "fast=5,10",
            "-p",
            "slow=20,40",
            "--metric",
            "total_return",
            "--jobs",
            "1",
            "--json",
            "--report",
            str(report),
        ],
    )

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    returns = [row["total_return"] for row in rows]
    assert len(rows) == 4
    assert returns == sorted(returns, reverse=True)
    assert '"type":"heatmap"' in report.read_text(encoding="utf-8").replace(" ", "")


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_backtest_sweep_json_when_batch_kernel_then_same_output_as_engine_alone(
    fill: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ffe.backtest import sweep

    args = ["backtest", "sweep", "--symbol", "SP500", "-p", "fast=5,10,30", "-p", "slow=20,40"]
    args += ["--commission", "0.002", "--fill", fill, "--jobs", "1", "--json"]

    batched = runner.invoke(app, args)
    monkeypatch.setattr(sweep, "batchable", lambda *_: False)  # every point on the engine
    alone = runner.invoke(app, args)

    assert batched.exit_code == 0, batched.output
    assert alone.exit_code == 0, alone.output
    assert batched.stdout == alone.stdout  # the same rows, in the same order, to the digit
    rows = json.loads(batched.stdout)
    assert len(rows) == 6
    assert sum("error" in row for row in rows) == 1  # fast=30, slow=20


def test_backtest_sweep_when_lower_is_better_then_smallest_first() -> None:
    args = ["backtest", "sweep", "--synthetic", "1", "--bars", "400", "--jobs", "1"]
    args += ["-p", "fast=3,5,10", "-p", "slow=20,40", "--metric", "annual_volatility", "--json"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    volatility = [row["annual_volatility"] for row in json.loads(result.stdout)]
    assert len(set(volatility)) > 1
    assert volatility == sorted(volatility)


def test_backtest_sweep_when_table_then_title_says_which_way_is_better() -> None:
    args = ["backtest", "sweep", "--synthetic", "1", "--bars", "400", "--jobs", "1"]
    args += ["-p", "fast=5,10", "-p", "slow=20", "--metric", "max_drawdown_duration"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "best 2 of 2 by max_drawdown_duration (lower is better)" in result.output


def test_backtest_sweep_when_metric_has_no_better_way_then_exit_2_listing_rankable() -> None:
    result = runner.invoke(app, ["backtest", "sweep", "-p", "fast=5,10", "--metric", "n_trades"])

    assert result.exit_code == 2
    assert "cannot rank by 'n_trades'" in result.output
    assert "annual_volatility" in result.output


def test_backtest_sweep_when_unknown_metric_then_exit_2_listing_metrics() -> None:
    result = runner.invoke(app, ["backtest", "sweep", "-p", "fast=5,10", "--metric", "shrp"])

    assert result.exit_code == 2
    assert "sharpe" in result.output


def test_backtest_run_when_error_quotes_brackets_then_printed_verbatim_on_one_line() -> None:
    result = runner.invoke(app, ["backtest", "run", "--param", "[bold]x" + "y" * 120])

    assert result.exit_code == 2
    assert "[bold]x" + "y" * 120 in result.output


def test_backtest_run_when_table_then_durations_in_days_and_dates_plain() -> None:
    result = runner.invoke(app, ["backtest", "run", "--symbol", "SP500"])

    assert result.exit_code == 0, result.output
    assert "7,301 days" in result.output
    assert "1999-01-04 " in result.output
    assert "T00:00:00" not in result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--fill", "bogus", "fill_at must be"), ("--cash", "-5", "cash must be positive")],
)
def test_backtest_run_when_bad_cost_option_then_exit_2_not_traceback(
    option: str, value: str, message: str
) -> None:
    result = runner.invoke(app, ["backtest", "run", option, value])

    assert result.exit_code == 2
    assert message in result.output


def test_backtest_run_when_workers_above_compute_max_workers_then_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command line is the operator's: -p workers=N is allowed there, at most the cap.
    monkeypatch.setenv("FFE__COMPUTE__MAX_WORKERS", "1")
    ensemble = ["-s", "ensemble", "-p", "models=naive", "-p", "window=100"]
    synthetic = ["--synthetic", "1", "--bars", "300", "--json", "--no-record"]

    result = runner.invoke(app, ["backtest", "run", *ensemble, "-p", "workers=100000", *synthetic])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"]["workers"] == 1


def test_backtest_sweep_when_executor_unknown_then_exit_2_naming_the_choices() -> None:
    result = runner.invoke(
        app, ["backtest", "sweep", "-p", "fast=5,10", "-p", "slow=20", "--executor", "dask"]
    )

    assert result.exit_code == 2
    assert "compute.executor" in result.output
    assert "'local' or 'ray'" in result.output


def test_backtest_run_when_walk_forward_on_ray_without_address_then_exit_2_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FFE__COMPUTE__RAY_ADDRESS", raising=False)

    result = runner.invoke(
        app,
        ["backtest", "run", "-p", "fast=5", "-p", "slow=20", "--walk-forward",
         "train=750,test=250", "--executor", "ray", "--no-record"],
    )  # fmt: skip

    assert result.exit_code == 2
    assert "compute.ray_address" in result.output
