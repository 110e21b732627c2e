"""`ffe backtest run --walk-forward`: segments in the table, the JSON, the report and the
journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
RUN = ["backtest", "run", "--symbol", "SP500", "--param", "fast=10", "--param", "slow=30"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


def test_run_when_walk_forward_json_and_report_then_segments_everywhere(tmp_path: Path) -> None:
    report = tmp_path / "wf.html"

    result = runner.invoke(
        app,
        [
            *RUN,
            "--walk-forward",
            "train=750,test=250",
            "-j",
            "2",
            "--json",
            "--report",
            str(report),
        ],
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    walk = data["walk_forward"]
    assert (walk["train"], walk["test"]) == (750, 250)
    segments = walk["segments"]
    assert len(segments) == 18  # 5,031 bundled bars: 750 to train, then 17 windows and 31 bars
    assert [s["bars"] for s in segments] == [250] * 17 + [31]
    assert segments[0]["test_start_bar"] == 750
    assert data["stats"]["start"] == segments[0]["test_start"]
    assert sum(s["n_trades"] for s in segments) == data["stats"]["n_trades"] == len(data["trades"])
    assert data["params"] == {"fast": 10, "slow": 30}
    html = report.read_text(encoding="utf-8")
    assert "Walk-forward segments (18)" in html
    assert "train=750,test=250" in html
    shown = runner.invoke(app, ["runs", "show", data["run_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    config = json.loads(shown.stdout)["config"]
    assert config["walk_forward"]["train"] == 750
    assert config["walk_forward"]["segments"] == 18
    assert config["bars"] == 5031 - 750


def test_run_when_walk_forward_then_table_of_segments() -> None:
    result = runner.invoke(
        app, [*RUN, "--start", "2012-01-01", "--walk-forward", "test=300,train=500", "--no-record"]
    )

    assert result.exit_code == 0, result.output
    assert "walk-forward train=500,test=300" in result.stdout
    assert "test from" in result.stdout
    assert "sharpe" in result.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("train=750", "must look like train=750,test=250"),
        ("train=750,test=zero", "test=zero must be a positive whole number"),
        ("train=5000,test=250", "needs at least 5,250 bars"),
    ],
)
def test_run_when_bad_walk_forward_then_exit_2_saying_what_to_fix(spec: str, message: str) -> None:
    result = runner.invoke(app, [*RUN, "--walk-forward", spec, "--no-record"])

    assert result.exit_code == 2
    assert message in result.output
