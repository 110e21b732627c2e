"""`ffe tune`: a study from the command line, resumed, listed, shown, reported and deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
TUNE = [
    "tune", "--synthetic", "1", "--bars", "700", "--walk-forward", "train=200,test=100",
    "--param", "fast=2..10", "--param", "slow=12..40", "--batch-size", "4", "-j", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


def test_tune_when_json_and_report_then_best_holdout_and_caveats(tmp_path: Path) -> None:
    report = tmp_path / "tune.html"

    result = runner.invoke(
        app, [*TUNE, "--trials", "8", "--study", "s", "--json", "--report", str(report)]
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["study"] == "s"
    assert data["trials"] == 8
    assert set(data["best"]["params"]) == {"fast", "slow"}
    assert data["holdout"]["bars"] == 140
    assert data["deflated_sharpe"]["n_trials"] >= 1
    assert "Optimization history" in report.read_text(encoding="utf-8")
    assert (tmp_path / "data" / "tune.db").exists()


def test_tune_when_run_again_then_resumed_and_listed_shown_deleted() -> None:
    first = runner.invoke(app, [*TUNE, "--trials", "4", "--study", "again"])
    assert first.exit_code == 0, first.output
    assert "stored as study again" in first.stdout

    second = runner.invoke(app, [*TUNE, "--trials", "8", "--study", "again"])
    listed = runner.invoke(app, ["tune", "list", "--json"])
    shown = runner.invoke(app, ["tune", "show", "again", "--json"])
    deleted = runner.invoke(app, ["tune", "delete", "again", "--yes"])
    gone = runner.invoke(app, ["tune", "show", "again"])

    assert second.exit_code == 0, second.output
    assert "4 trials were done already" in second.stdout
    assert [s["name"] for s in json.loads(listed.stdout)] == ["again"]
    details = json.loads(shown.stdout)
    assert len(details["trial_list"]) == 8
    assert details["setup"]["walk_forward"] == "train=200,test=100"
    assert deleted.exit_code == 0
    assert gone.exit_code == 2
    assert "no study named 'again'" in gone.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give the search space"),
        (["--param", "fast=9..3"], "must go up"),
        (["--param", "fast=2..10", "--metric", "n_trades"], "cannot rank"),
        (["--param", "fast=2..10", "--sampler", "cmaes"], "unknown sampler"),
        (["--param", "fast=2..10", "--holdout", "1.5"], "--holdout"),
    ],
)
def test_tune_when_bad_input_then_one_line_error_before_any_trial(
    extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["tune", "--synthetic", "1", "--bars", "700", *extra])

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
