"""Ctrl-C during ``ffe backtest run``: no traceback, nothing recorded, and the command to run
it again (a backtest starts over)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from ffe.cli.app import app

# A strategy that says when the backtest has reached it, then takes its time.
SLOW = """
import os, time
from pathlib import Path

class Slow:
    name = "slow"

    def warmup(self):
        return 1

    def targets(self, history):
        Path(os.environ["SLOW_MARKER"]).write_text("reached")
        time.sleep(60)
        return history.close * 0
"""


def test_backtest_run_when_ctrl_c_then_exit_130_nothing_recorded_and_the_command(tmp_path: Path):
    strategy = tmp_path / "slow.py"
    strategy.write_text(SLOW)
    marker = tmp_path / "reached"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FFE__")}
    env |= {"FFE__DATA__DIR": str(tmp_path), "SLOW_MARKER": str(marker)}
    args = ["backtest", "run", "--strategy", f"{strategy}:Slow", "--start", "2018-01-01"]
    backtest = subprocess.Popen(
        [sys.executable, "-m", "ffe", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert backtest.poll() is None, backtest.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)

    backtest.send_signal(signal.SIGINT)
    out, err = backtest.communicate(timeout=60)

    assert backtest.returncode == 130
    assert "Traceback" not in err
    assert " ".join(err.split()) == (
        "stopped by Ctrl-C; nothing was recorded. A backtest starts over: run it again with "
        f"`ffe {' '.join(args)}`"
    )
    assert out == ""
    journal = {"FFE__DATA__DIR": str(tmp_path)}
    listed = CliRunner().invoke(app, ["runs", "list", "--json"], env=journal)
    assert listed.stdout.strip() == "[]"
