"""`--strategy path/to/file.py:Class`: every command that takes a strategy runs a class from a
file, with its parameters coerced as a built-in's, and says clearly what is wrong with one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.strategy_files import forgotten
from typer.testing import CliRunner, Result

from ffe.cli.app import app

runner = CliRunner()

CROSS = '''
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


def _mean(close, window):
    out = np.full(close.shape, np.nan)
    sums = np.cumsum(close, axis=0)
    out[window - 1 :] = sums[window - 1 :]
    out[window:] -= sums[:-window]
    return out / window


@dataclass(frozen=True)
class Cross:
    """Long while the fast mean of the close is above the slow one."""

    name: ClassVar[str] = "file_cross"
    fast: int = 10
    slow: int = 30

    def warmup(self) -> int:
        return self.slow

    def targets(self, history):
        close = history.close
        fast, slow = _mean(close, self.fast), _mean(close, self.slow)
        out = np.where(fast > slow, 1.0, 0.0)
        out[: self.slow - 1] = np.nan
        return out


class Half:
    name = "half"

    def targets(self, history):
        return history.close * 0
'''


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


@pytest.fixture
def cross(tmp_path: Path) -> str:
    (tmp_path / "cross.py").write_text(CROSS)
    return "cross.py:Cross"


def _ok(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _json(*args: str) -> Any:
    return json.loads(_ok(*args).stdout)


def test_backtest_run_when_file_strategy_then_run_records_its_name_and_sha256(
    cross: str, tmp_path: Path
) -> None:
    report = _json("backtest", "run", "-s", cross, "-p", "fast=5", "-p", "slow=20.0", "--json")

    shown = _json("runs", "show", report["run_id"], "--json")
    assert shown["strategy"] == "file_cross"
    assert shown["params"] == {"fast": 5, "slow": 20}
    source = shown["config"]["strategy_file"]
    assert source["sha256"] == hashlib.sha256((tmp_path / "cross.py").read_bytes()).hexdigest()
    assert (source["path"], source["class"]) == ("cross.py", "Cross")
    assert shown["trades"]
    assert {"entry_time", "exit_time", "direction"} <= set(shown["trades"][0])


def test_backtest_walk_forward_and_sweep_when_file_strategy_then_they_run(cross: str) -> None:
    walked = _json(
        "backtest", "run", "-s", cross, "--walk-forward", "train=300,test=300", "-j", "1", "--json"
    )
    swept = _json("backtest", "sweep", "-s", cross, "-p", "fast=3,5", "-j", "2", "--json")

    assert len(walked["walk_forward"]["segments"]) >= 2
    assert sorted(row["fast"] for row in swept) == [3, 5]


def test_sweep_when_file_strategy_then_output_and_report_name_its_sha256(
    cross: str, tmp_path: Path
) -> None:
    sha256 = hashlib.sha256(CROSS.encode()).hexdigest()

    shown = _ok("backtest", "sweep", "-s", cross, "-p", "fast=3,5", "-j", "1",
                "--report", str(tmp_path / "sweep.html"))  # fmt: skip

    assert f"strategy file cross.py:Cross {sha256}" in " ".join(shown.stdout.split())
    html = (tmp_path / "sweep.html").read_text()
    assert "cross.py:Cross" in html
    assert sha256 in html


TUNE = ("--synthetic", "1", "--bars", "700", "--walk-forward", "train=200,test=100",
        "-p", "fast=2..10", "-p", "slow=12..40", "-j", "1")  # fmt: skip


def test_tune_when_file_strategy_then_study_runs_and_records_its_sha256(
    cross: str, tmp_path: Path
) -> None:
    tuned = _json("tune", "-s", cross, *TUNE, "--trials", "4", "--study", "mine", "--json")
    shown = _json("tune", "show", "mine", "--json")
    _ok("tune", "show", "mine", "--report", str(tmp_path / "tune.html"))

    assert tuned["trials"]
    assert 2 <= tuned["best"]["params"]["fast"] <= 10
    wanted = {
        "path": "cross.py",
        "class": "Cross",
        "sha256": hashlib.sha256(CROSS.encode()).hexdigest(),
    }
    assert tuned["strategy_file"] == wanted
    assert shown["setup"]["strategy_file"] == wanted
    assert shown["result"]["strategy_file"] == wanted
    assert wanted["sha256"] in (tmp_path / "tune.html").read_text()


def test_tune_when_resumed_after_the_file_changed_then_exit_2_saying_so(tmp_path: Path) -> None:
    # A file no other test names: a process keeps the classes it loaded by path:Class.
    (tmp_path / "changing.py").write_text(CROSS)
    spec = "changing.py:Cross"
    with forgotten():  # the next command reads the file afresh, as a new process would
        _json("tune", "-s", spec, *TUNE, "--trials", "2", "--study", "mine", "--json")
    (tmp_path / "changing.py").write_text(CROSS.replace("fast: int = 10", "fast: int = 9"))

    result = runner.invoke(app, ["tune", "-s", spec, *TUNE, "--trials", "4", "--study", "mine"])

    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "study 'mine' cannot be resumed: its strategy_file differ" in said
    assert "the strategy file's text or class changed since" in said


def test_check_lookahead_when_honest_file_strategy_then_exit_0(cross: str) -> None:
    result = _ok("check", "lookahead", "-s", cross, "--bars", "400")

    assert "look-ahead check of file_cross (400 bars)" in result.stdout
    assert "strategy 'file_cross' passed" in result.stdout


def test_agent_run_when_file_strategy_then_paper_run_recorded(cross: str) -> None:
    report = _json(
        "agent", "run", "-s", cross, "--symbol", "SP500", "--start", "2018-01-01", "--json"
    )

    shown = _json("runs", "show", report["run_id"], "--json")
    assert shown["strategy"] == "file_cross"
    assert shown["config"]["strategy_file"]["sha256"] == hashlib.sha256(CROSS.encode()).hexdigest()


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("missing.py:Cross", "strategy file missing.py not found"),
        ("cross.py:Other", "cross.py has no class 'Other'; classes defined or imported there"),
        ("cross.py:Half", "lacks a `warmup` method"),
    ],
)
def test_backtest_run_when_bad_file_strategy_then_exit_2_saying_what(
    cross: str, spec: str, said: str
) -> None:
    result = runner.invoke(app, ["backtest", "run", "-s", spec])

    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())


def test_backtest_run_when_file_fails_to_import_then_its_error_is_shown(tmp_path: Path) -> None:
    (tmp_path / "typo.py").write_text("import numpy as np\n\nnp.arange(3).nosuch()\n")

    result = runner.invoke(app, ["backtest", "run", "-s", "typo.py:Cross"])

    assert result.exit_code == 2, result.output
    assert "importing strategy file typo.py failed" in result.output
    assert "AttributeError" in result.output
    assert "nosuch" in result.output


CHEAT = """
from typing import ClassVar

import numpy as np

_SEEN = {}  # time -> tomorrow's move: what loading the whole data file would give


class Tomorrow:
    \"\"\"Long before a rise, short before a fall: it knows tomorrow's close.\"\"\"

    name: ClassVar[str] = "tomorrow"

    def warmup(self) -> int:
        return 1

    def targets(self, history):
        close, times = history.close[:, 0], history.times
        for i in range(len(times) - 1):
            _SEEN.setdefault(times[i], np.sign(close[i + 1] - close[i]))
        out = np.array([_SEEN.get(t, np.nan) for t in times])
        return out[:, None]
"""


def test_backtest_run_when_results_implausible_then_warned_everywhere(tmp_path: Path) -> None:
    (tmp_path / "cheat.py").write_text(CHEAT)
    args = ["backtest", "run", "-s", "cheat.py:Tomorrow", "--start", "2015-01-01"]
    args += ["--commission", "0", "--slippage-bps", "0"]  # daily trading costs hide the return

    shown = _ok(*args, "--report", str(tmp_path / "r.html"))
    report = _json(*args, "--json")
    stored = _json("runs", "show", report["run_id"], "--json")

    said = " ".join(shown.stdout.split())
    assert "warning: implausible Sharpe ratio" in said
    assert "a strategy reading future data" in said
    assert [w.split(" (")[0] for w in report["warnings"]] == [
        f"implausible Sharpe ratio {report['stats']['sharpe']:.2f} on 1d bars",
        f"implausible total return: equity grew {report['stats']['total_return'] + 1:,.0f}x",
    ]
    assert stored["stats"]["warnings"] == report["warnings"]
    assert "implausible Sharpe ratio" in (tmp_path / "r.html").read_text()


def test_backtest_run_when_results_plausible_then_no_warning(cross: str) -> None:
    report = _json("backtest", "run", "-s", cross, "--json")

    assert "warnings" not in report
    assert "warnings" not in _json("runs", "show", report["run_id"], "--json")["stats"]


def test_check_lookahead_when_a_strategy_memoizes_the_future_then_caught_in_fresh_processes(
    tmp_path: Path,
) -> None:
    """The memoizing cheat keeps the real run's future in a module-level dict: run in this
    process the poisoned runs find it there and decide as the real run did, so the check
    passes; each run in a fresh process, the poisoned runs cannot, and the check fails."""
    (tmp_path / "cheat.py").write_text(CHEAT)
    args = ["check", "lookahead", "-s", "cheat.py:Tomorrow", "--bars", "300", "--json"]

    fresh = runner.invoke(app, args)
    shared = runner.invoke(app, [*args, "--in-process"])

    assert fresh.exit_code == 1, fresh.output
    assert json.loads(fresh.stdout)["passed"] is False
    assert "target for SP500" in json.loads(fresh.stdout)["message"]
    assert shared.exit_code == 0, shared.output  # what the in-process check misses
    assert json.loads(shared.stdout)["passed"] is True
