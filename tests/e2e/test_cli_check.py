"""`ffe check lookahead`: a table and exit 0 for an honest strategy, exit 1 for a cheat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from ffe.cli.app import app
from ffe.decide import available, register
from ffe.decide import strategy as strategy_module
from ffe.domain import History

runner = CliRunner()
CHECK_MOMENTUM = ["check", "lookahead", "-s", "momentum", "-p", "lookback=20", "-p", "rebalance=5"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


@dataclass(frozen=True)
class TomorrowsClose:
    """A test-only cheat: long when tomorrow's close is higher than today's."""

    name: ClassVar[str] = "test_tomorrows_close"
    scale: float = 10.0

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        close = history.close
        out = np.full(close.shape, np.nan)
        out[:-1] = (close[1:] / close[:-1] - 1.0) * self.scale
        return out


@pytest.fixture
def cheat() -> Iterator[str]:
    """Registered in this process only: checks of it run --in-process (a file strategy is
    checked in fresh processes: tests/e2e/test_cli_user_strategy.py)."""
    register(TomorrowsClose)
    yield TomorrowsClose.name
    strategy_module._REGISTRY.pop(TomorrowsClose.name, None)


def test_check_lookahead_when_honest_strategy_then_table_and_exit_0() -> None:
    result = runner.invoke(
        app, ["check", "lookahead", "--strategy", "sma_cross", "--param", "fast=5", "--bars", "800"]
    )

    assert result.exit_code == 0, result.output
    assert "look-ahead check of sma_cross (800 bars)" in result.stdout
    assert result.stdout.count("pass") >= 3
    assert "FAIL" not in result.stdout


def test_check_lookahead_when_cheat_then_exit_1_naming_the_first_changed_bar(cheat: str) -> None:
    result = runner.invoke(
        app,
        ["check", "lookahead", "--strategy", cheat, "--bars", "500", "--cuts", "2", "--in-process"],
    )

    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout
    assert "looks ahead" in result.stderr
    # Two cuts spread over bars 1..498 of the 500: bars 250 and 498; the first is named.
    assert "when the bars after" in result.stderr
    assert "its target for SP500 at" in result.stderr
    assert "(bar 250) changed from" in result.stderr
    assert cheat in available()


def test_check_lookahead_when_cheat_and_json_then_report_and_exit_1(cheat: str) -> None:
    result = runner.invoke(
        app,
        [
            "check",
            "lookahead",
            "-s",
            cheat,
            "--synthetic",
            "2",
            "--bars",
            "300",
            "--json",
            "--in-process",
        ],
    )

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is False
    assert report["bars"] == 300
    assert len(report["cuts"]) == 3
    for cut in report["cuts"]:
        assert cut["first_change"]["bar"] == cut["cut_bar"]
        assert cut["first_change"]["kind"] == "target"


def test_check_lookahead_when_synthetic_and_json_then_passes_with_every_cut() -> None:
    result = runner.invoke(
        app,
        [*CHECK_MOMENTUM, "--synthetic", "5", "--bars", "400", "--cuts", "4", "--json"],
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert [cut["passed"] for cut in report["cuts"]] == [True] * 4


def test_check_lookahead_when_unknown_strategy_then_exit_2_with_choices() -> None:
    result = runner.invoke(app, ["check", "lookahead", "--strategy", "nope"])

    assert result.exit_code == 2
    assert "unknown strategy 'nope'" in result.output


def test_check_lookahead_when_bad_parameter_then_exit_2_naming_it() -> None:
    result = runner.invoke(app, ["check", "lookahead", "-s", "sma_cross", "-p", "fast=x"])

    assert result.exit_code == 2
    assert "fast" in result.output
