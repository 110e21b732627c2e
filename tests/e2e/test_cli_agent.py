"""`ffe agent`: a paper run replays stored bars into the journal like a backtest, with the same
trades; the steering commands answer clearly when there is nothing to steer."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ffe.cli.app import app

runner = CliRunner()
# 2015 to the end of the bundled SP500 bars: about a thousand bars, a second per run.
SETTINGS = ["--symbol", "SP500", "--strategy", "sma_cross", "-p", "fast=10", "-p", "slow=20"]
SETTINGS += ["--start", "2015-01-01"]
AGENT_RUN = ["agent", "run", *SETTINGS, "--json"]


def _ok(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _json(*args: str) -> Any:
    return json.loads(_ok(*args).stdout)


async def _hold_lease(account: str, owner: str) -> None:
    """Take the account's lease in the CLI's journal, as another running agent would."""
    from ffe import bootstrap
    from ffe.agent import persist
    from ffe.config import load_settings

    db = await bootstrap.open_journal(load_settings())
    try:
        await persist.acquire_lease(db, account, owner, ttl=timedelta(hours=1))
    finally:
        await db.dispose()


def _refused(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    return result


def test_agent_run_when_replay_then_finished_paper_run_with_backtest_trades():
    report = _json(*AGENT_RUN)
    backtest = _json("backtest", "run", *SETTINGS, "--json")

    shown = _json("runs", "show", report["run_id"][:8], "--json")
    listed = _json("runs", "list", "--json")

    assert report["status"] == "finished"
    assert report["resumed"] is False
    assert report["bars"] > 900
    assert report["reconciliation"]["consistent"] is True
    assert shown["id"] == report["run_id"]
    assert shown["kind"] == "paper"
    assert shown["status"] == "finished"
    assert shown["params"] == {"fast": 10, "slow": 20}
    expected = backtest["stats"]
    assert expected["n_trades"] > 10
    assert shown["stats"]["n_trades"] == expected["n_trades"]
    assert shown["stats"]["final_equity"] == pytest.approx(expected["final_equity"], rel=1e-12)
    assert shown["stats"]["total_return"] == pytest.approx(expected["total_return"], abs=1e-12)
    assert report["stats"]["n_trades"] == expected["n_trades"]
    assert shown["trades"] == backtest["trades"]
    kinds = {run["id"]: run["kind"] for run in listed}
    assert kinds[report["run_id"]] == "paper"
    assert kinds[backtest["run_id"]] == "backtest"


def test_agent_run_when_replay_ends_then_summary_against_buy_and_hold():
    plain = _ok("agent", "run", *SETTINGS).stdout
    report = _json(*AGENT_RUN)

    summary = report["summary"]
    stats = report["stats"]
    assert summary["total_return"] == pytest.approx(stats["total_return"])
    assert summary["benchmark_return"] < stats["buy_and_hold_return"]  # the purchase's costs
    assert summary["trades"] == stats["n_trades"]
    assert summary["max_drawdown"] == pytest.approx(stats["max_drawdown"])
    assert len(summary["next_steps"]) == 3
    lines = plain.splitlines()
    assert "replay finished: sma_cross on SP500" in plain
    assert any(line.startswith("  return ") and "(buy and hold " in line for line in lines)
    assert "what to try next:" in lines
    assert "  ffe backtest run --strategy sma_cross --param fast=10 --param slow=20" in plain
    assert "\x1b[" not in plain  # plain lines, no terminal codes


def test_agent_run_when_previous_run_finished_then_new_run_started():
    first = _json(*AGENT_RUN)

    second = _json(*AGENT_RUN)

    listed = [run for run in _json("runs", "list", "--json") if run["kind"] == "paper"]
    assert second["run_id"] != first["run_id"]
    assert second["resumed"] is False
    assert second["first_bar"] == 0
    assert second["status"] == "finished"
    assert second["stats"]["n_trades"] == first["stats"]["n_trades"]
    assert [(r["id"], r["status"]) for r in listed] == [
        (second["run_id"], "finished"),
        (first["run_id"], "finished"),
    ]


def test_agent_run_when_account_held_by_live_agent_then_error_naming_it():
    holder = f"{socket.gethostname()}:{os.getppid()}:elsewhere"  # a process that is alive
    asyncio.run(_hold_lease("paper", holder))

    result = _refused(*AGENT_RUN)

    assert holder in result.output
    assert "ffe agent stop --account paper" in result.output
    assert _json("runs", "list", "--json") == []


def test_agent_status_when_run_finished_then_account_listed_not_running():
    report = _json(*AGENT_RUN)

    status = _json("agent", "status", "--json")
    table = _ok("agent", "status").stdout

    assert len(status) == 1
    assert status[0]["account"] == "paper"
    assert status[0]["running"] is False
    assert status[0]["owner"] is None
    assert status[0]["status"] == "finished"  # the replay reached the end of the data
    assert status[0]["run_id"] == report["run_id"]
    assert status[0]["bar"] == report["bars"] - 1
    assert "not running" in table


def test_agent_status_when_no_agent_ever_ran_then_says_how_to_start_one():
    assert _json("agent", "status", "--json") == []
    assert "ffe agent run" in _ok("agent", "status").stdout


def test_agent_approvals_when_queue_empty_then_says_so():
    table = _ok("agent", "approvals").stdout

    assert "no orders are waiting for approval" in table
    assert _json("agent", "approvals", "--json") == []


def test_agent_approve_when_id_unknown_then_error_naming_it():
    result = _refused("agent", "approve", "999")

    assert "no approval 999" in result.output
    assert "ffe agent approvals" in result.output


def test_agent_reject_when_id_unknown_then_error_naming_it():
    assert "no approval 998" in _refused("agent", "reject", "998").output


def test_agent_pause_when_account_never_ran_then_error_saying_so():
    result = _refused("agent", "pause", "--account", "nosuch")

    assert "no agent has run on account 'nosuch'" in result.output


def test_agent_run_when_approval_mode_bogus_then_error_listing_modes():
    result = _refused("agent", "run", *SETTINGS, "--approval", "bogus")

    assert "approval must be one of auto, manual, on_new_asset" in result.output
    assert _json("runs", "list", "--json") == []  # nothing was started


async def _in_journal(work: Any) -> Any:
    from ffe import bootstrap
    from ffe.config import load_settings

    db = await bootstrap.open_journal(load_settings())
    try:
        return await work(db)
    finally:
        await db.dispose()


def test_agent_reset_after_emergency_stop_when_no_agent_running_then_not_halted():
    _json(*AGENT_RUN)

    stopped = _ok("agent", "emergency-stop").stdout
    halted = _json("agent", "status", "--json")[0]
    reset = _ok("agent", "reset").stdout
    lifted = _json("agent", "status", "--json")[0]

    assert "halted now" in stopped
    assert (halted["status"], halted["running"]) == ("halted", False)
    assert halted["halted_reason"] == "emergency stop by cli"
    assert "no longer halted" in reset
    assert (lifted["status"], lifted["halted_reason"]) == (
        "finished",
        None,
    )  # its last run reached the end of the data


@pytest.mark.parametrize("command", ["pause", "resume", "stop"])
def test_agent_command_when_no_agent_running_then_refused_saying_so(command):
    _json(*AGENT_RUN)

    result = _refused("agent", command)

    assert "no agent is running on account 'paper'" in result.output
    assert _json("agent", "status", "--json")[0]["status"] == "finished"


def test_agent_status_when_holder_killed_and_its_lease_expired_then_not_running():
    from ffe.agent import persist

    async def killed(db: Any) -> None:
        await persist.acquire_lease(db, "paper", "otherhost:7:killed", timedelta(seconds=-65))
        await persist.set_state(db, "paper", status="running")

    asyncio.run(_in_journal(killed))

    status = _json("agent", "status", "--json")[0]
    table = _ok("agent", "status").stdout

    assert (status["running"], status["status"]) == (False, "stopped")
    assert "not running" in table


def test_agent_approve_when_its_run_no_longer_runs_then_refused_and_still_pending():
    from ffe.store.models import Approval
    from ffe.store.types import utc_now

    report = _json(*AGENT_RUN)

    async def waiting(db: Any) -> int:
        async with db.session() as session:
            row = Approval(
                run_id=report["run_id"],
                account="paper",
                client_order_id="left-behind",
                time=utc_now(),
                symbol="SP500",
                quantity=1.0,
                reference_price=100.0,
                status="pending",
                expires_at=utc_now() + timedelta(hours=1),
            )
            session.add(row)
            await session.flush()
            return int(row.id)

    approval_id = asyncio.run(_in_journal(waiting))

    result = _refused("agent", "approve", str(approval_id))

    assert f"approval {approval_id} belongs to run {report['run_id'][:8]}" in result.output
    assert "no agent is trading now" in result.output
    assert [a["id"] for a in _json("agent", "approvals", "--json")] == [approval_id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--feed", "nasdaq:live"], "unknown source 'nasdaq:live': use one of"),
        (["--feed", "ccxt:nowhere"], "ccxt has no exchange 'nowhere'"),
        (["--feed", "ccxt:binance", "--timeframe", "1x"], "timeframe '1x' is not valid"),
        (["--feed", "ccxt:binance", "--start", "last week"], "--start 'last week' is not a date"),
        (
            ["--feed", "ccxt:binance", "--start", "2026-02-01", "--end", "2026-01-01"],
            "is before --start",
        ),
    ],
)
def test_run_on_a_feed_when_it_is_misnamed_then_refused_saying_what_to_fix(args, message):
    result = _refused("agent", "run", "--symbol", "BTC/USDT", *args)

    assert message in " ".join(result.output.split())


def test_health_when_an_agent_ran_then_agent_check_says_when_it_stopped():
    report = _json(*AGENT_RUN)

    health = json.loads(runner.invoke(app, ["health", "--json"]).stdout)

    agent = health["checks"]["agent"]
    assert agent["ok"] is True
    assert f"the last one (run {report['run_id'][:8]}) stopped" in agent["detail"]
    assert set(health["checks"]) == {"database", "disk", "memory", "agent"}  # as /health/ready
