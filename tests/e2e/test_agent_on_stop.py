"""`ffe agent run --on-stop wait`, as a supervisor (compose, Kubernetes, systemd) runs it: a stop
command leaves the process up, trading nothing, with its probes answering; killed and started
again with the same command it still trades nothing; `ffe agent resume` starts it, and it
resumes the same run without sending any order twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.server import ffe_process, wait_live
from tests.support.wait import wait_for
from typer.testing import CliRunner

from ffe.cli.app import app

# About 1,700 bars at 40 a second: far more than the test needs, and one order every few bars.
AGENT = ["agent", "run", "--symbol", "SP500", "--strategy", "sma_cross", "-p", "fast=3"]
AGENT += ["-p", "slow=6", "--start", "2012-01-01", "--speed", "40", "--on-stop", "wait"]
QUIET_S = 3.0  # how long a stopped agent is watched for trading


def _journal() -> sqlite3.Connection:
    path = Path(os.environ["FFE__DATA__DIR"]) / "ffe.db"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def _state() -> dict[str, Any]:
    """The account's row and its run's orders, as the journal has them now (none while the
    agent, its probes already up, is still being built)."""
    if not (Path(os.environ["FFE__DATA__DIR"]) / "ffe.db").exists():
        return {}
    with _journal() as db:
        tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'agent_states'")
        if tables.fetchone() is None:  # created, not yet migrated
            return {}
        row = db.execute(
            "SELECT status, run_id, halted_reason, checkpoint, last_bar_time FROM agent_states "
            "WHERE account = 'paper'"
        ).fetchone()
        if row is None:
            return {}
        status, run_id, reason, checkpoint, last_bar = row
        orders = db.execute(
            "SELECT client_order_id FROM orders WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        decisions = db.execute("SELECT count(*) FROM decisions WHERE run_id = ?", (run_id,))
        return {
            "status": status,
            "run_id": run_id,
            "reason": reason,
            "checkpoint": checkpoint,
            "last_bar_time": last_bar,
            "orders": [o[0] for o in orders],
            "decisions": decisions.fetchone()[0],
        }


def _send(command: str) -> str:
    sent = CliRunner().invoke(app, ["agent", command])
    assert sent.exit_code == 0, sent.output
    return sent.output


def _still(process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """The journal before and after QUIET_S of a process that must trade nothing."""
    before = _state()
    time.sleep(QUIET_S)
    assert process.poll() is None, f"the stopped agent exited:\n{log.read_text()}"
    after = _state()
    assert after == before, (before, after)
    return after


def _trading(at_least: int) -> bool:
    return len(_state().get("orders", [])) >= at_least


def test_agent_with_on_stop_wait_when_stopped_then_up_not_trading_across_restarts_until_resume():
    data = Path(os.environ["FFE__DATA__DIR"])
    first_log, second_log = data / "agent-1.log", data / "agent-2.log"
    with ffe_process(first_log, *AGENT, port_option="--health-port") as (probe, agent):
        wait_live(probe, agent, first_log)
        wait_for(lambda: _trading(3), 60)
        assert "stop sent" in _send("stop")
        wait_for(lambda: _state().get("status") == "stopped", 30)
        stopped = _still(agent, first_log)
        live = httpx.get(f"{probe}/health/live", timeout=10)
        ready = httpx.get(f"{probe}/health/ready", timeout=10)
        metrics = httpx.get(f"{probe}/metrics", timeout=10).text
        agent.send_signal(signal.SIGKILL)  # as a supervisor's restart, or a crash, ends it
        agent.wait(10)

    assert live.status_code == 200
    assert ready.status_code == 200, ready.text  # healthy, and says why it trades nothing
    assert ready.json()["status"] == "degraded"
    assert "stopped on purpose by cli" in ready.json()["checks"]["trading"]["detail"]
    assert 'ffe_agent_running{account="paper"} 0.0' in metrics
    assert stopped["reason"] == "stopped by cli"

    with ffe_process(second_log, *AGENT, port_option="--health-port") as (probe, agent):
        wait_live(probe, agent, second_log)
        # It holds the account (commands reach it) and trades nothing.
        wait_for(lambda: "on purpose" in httpx.get(f"{probe}/health/ready", timeout=10).text, 30)
        restarted = _still(agent, second_log)
        assert restarted == stopped
        assert "resume sent" in _send("resume")
        wait_for(lambda: _trading(len(stopped["orders"]) + 3), 60)
        resumed = _state()
        ready = httpx.get(f"{probe}/health/ready", timeout=10).json()

    assert ready["checks"]["trading"]["ok"] is True
    assert resumed["run_id"] == stopped["run_id"]  # the same run, resumed
    assert resumed["orders"][: len(stopped["orders"])] == stopped["orders"]
    assert len(set(resumed["orders"])) == len(resumed["orders"])  # no order sent twice
    assert resumed["decisions"] > stopped["decisions"]
    text = second_log.read_text()
    assert "stopped on purpose by cli" in text
    assert "Traceback" not in text
