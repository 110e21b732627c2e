"""`ffe decisions list | calibration` on a recorded run of the ensemble strategy.

One ensemble backtest is recorded for the whole module, in a journal of its own (SQLite in a
data directory the module owns); every test reads it back through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from arch.data import sp500
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
ENSEMBLE = [
    "backtest",
    "run",
    "--strategy",
    "ensemble",
    "--symbol",
    "SP500",
    "--start",
    "2016-01-01",
    *("-p", "models=naive,drift,garch", "-p", "window=150"),
    *("-p", "refit_every=50", "-p", "workers=1", "--json"),
]
HORIZON = 5  # the strategy's default


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("decisions-journal")


@pytest.fixture(scope="module")
def run_id(data_dir: Path) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FFE__DATA__DIR", str(data_dir))
        patch.delenv("FFE__DATABASE__URL", raising=False)
        result = runner.invoke(app, ENSEMBLE)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["strategy"] == "ensemble"
    return str(printed["run_id"])


@pytest.fixture
def journal(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's journal instead of this test's empty one."""
    monkeypatch.setenv("FFE__DATA__DIR", str(data_dir))
    return data_dir


def _json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _close_from_2016() -> tuple[list[str], np.ndarray]:
    frame = sp500.load().loc["2016-01-01":]
    return [f"{day:%Y-%m-%d}" for day in frame.index], frame["Close"].to_numpy()


def test_backtest_run_when_ensemble_then_recorded_with_its_parameters(
    journal: Path, run_id: str
) -> None:
    shown = _json("runs", "show", run_id[:8])

    assert len(run_id) == 32
    assert shown["id"] == run_id
    assert shown["strategy"] == "ensemble"
    assert shown["params"]["models"] == "naive,drift,garch"
    assert (shown["params"]["window"], shown["params"]["workers"]) == (150, 1)


def test_decisions_list_when_ensemble_run_then_decisions_with_outcomes(
    journal: Path, run_id: str
) -> None:
    days, close = _close_from_2016()

    listed = _json("decisions", "list", run_id, "--limit", "1000")
    newest = _json("decisions", "list", run_id)

    assert len(listed) > 50
    assert newest == listed[-20:]
    assert [row["time"] for row in listed] == sorted(row["time"] for row in listed)
    for row in listed:
        bar = days.index(row["time"][:10])
        assert row["rationale"].startswith("SP500: ")
        assert math.fsum(row["votes"]["weights"].values()) == pytest.approx(1.0)
        held = row["votes"]["action"] == "hold"  # the run keeps its position on a hold
        assert (row["action"], row["target"] is None) == (row["votes"]["action"], held)
        if bar + HORIZON >= len(days):
            assert row["outcome"] is None
            continue
        realized = math.log(close[bar + HORIZON] / close[bar])
        cost, side = row["votes"]["cost"], row["votes"]["side"]
        hit = realized > math.log(1 + cost) if side > 0 else realized < math.log(1 - cost)
        assert row["outcome"]["realized_return"] == pytest.approx(realized, rel=1e-12)
        assert row["outcome"]["hit"] is hit


def test_decisions_calibration_when_ensemble_run_then_stated_and_raw_tables(
    journal: Path, run_id: str
) -> None:
    listed = _json("decisions", "list", run_id, "--limit", "1000")
    judged = [row for row in listed if row["outcome"] is not None]

    calibration = _json("decisions", "calibration", run_id, "--bins", "5")

    assert calibration["run_id"] == run_id
    assert calibration["strategy"] == "ensemble"
    assert calibration["decisions"] == len(listed)
    assert calibration["resolved"] == len(judged) > 0
    for table, key in ((calibration["stated"], "confidence"), (calibration["raw"], None)):
        confidence = np.array(
            [row[key] if key else row["votes"]["raw_confidence"] for row in judged]
        )
        hit = np.array([row["outcome"]["hit"] for row in judged], dtype=float)
        which = np.minimum((confidence * 5).astype(int), 4)
        gaps = [
            abs(hit[which == k].mean() - confidence[which == k].mean()) * (which == k).sum()
            for k in range(5)
            if (which == k).any()
        ]
        assert 0.0 <= table["ece"] <= 1.0
        assert table["ece"] == pytest.approx(sum(gaps) / len(judged), rel=1e-9)
        assert sum(b["count"] for b in table["bins"]) == calibration["resolved"]
        assert [b["count"] for b in table["bins"]] == np.bincount(which, minlength=5).tolist()
    # Skill, next to calibration: the AUC of the confidence the decisions used, and a verdict.
    skill = calibration["stated_skill"]
    used = np.array([row["confidence"] for row in judged])
    hits = np.array([row["outcome"]["hit"] for row in judged], dtype=float)
    assert skill["n"] == len(judged)
    assert skill["auc"] == pytest.approx(roc_auc_score(hits, used), abs=1e-12)
    assert skill["verdict"].startswith("the confidence has")
    assert calibration["raw_skill"]["n"] == len(judged)


def test_decisions_calibration_when_report_asked_then_page_with_reliability_chart(
    journal: Path, run_id: str, tmp_path: Path
) -> None:
    page = tmp_path / "x.html"

    result = runner.invoke(app, ["decisions", "calibration", run_id, "--report", str(page)])

    assert result.exit_code == 0, result.output
    assert "report written to" in result.stderr
    html = page.read_text()
    assert f"Calibration of run {run_id}" in html
    assert "Reliability" in html
    assert "realized hit rate" in html
    assert "used by the decisions" in html
    assert "<h2>Skill</h2>" in html or ">Skill<" in html
    assert "the confidence has" in html  # the verdict in words
    assert "Before recalibration: the confidence has" in html


def test_decisions_calibration_when_run_has_no_decisions_then_one_line_error(
    journal: Path,
) -> None:
    sma = _json("backtest", "run", "--symbol", "SP500", "--start", "2018-01-01")
    assert sma["strategy"] == "sma_cross"

    result = runner.invoke(app, ["decisions", "calibration", sma["run_id"]])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "strategy 'sma_cross' does not explain its decisions" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["list", "calibration"])
def test_decisions_when_run_id_unknown_then_one_line_error(journal: Path, command: str) -> None:
    result = runner.invoke(app, ["decisions", command, "deadbeef"])

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: no run 'deadbeef' in this journal (see `ffe runs list`)"
    )
    assert "Traceback" not in result.output
