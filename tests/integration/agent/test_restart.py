"""Kill a replaying paper agent at random moments (SIGKILL: no clean-up at all), restart it
each time, and check the end result equals an uninterrupted run with no order sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
from sqlalchemy import func, select

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import DataCatalog, load_market
from ffe.decide.strategy import make_strategy
from ffe.execution.fill_model import FillModel
from ffe.risk.engine import RiskEngine
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import AgentState, AuditEntry, Fill, Order, Run
from ffe.store.repositories import unit_of_work

START = "2009-01-01"
ARGS = [
    "--symbol",
    "SP500",
    "-s",
    "sma_cross",
    "-p",
    "fast=10",
    "-p",
    "slow=20",
    "--commission",
    "0.002",
    "--start",
    START,
    "--speed",
    "1000",
    "--json",
]


def _agent(env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ffe", "agent", "run", *ARGS]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _bar(url: str) -> int:
    """The last bar the account's agent checkpointed (-1: none yet)."""

    async def read() -> int:
        db = Database(url)
        try:
            async with unit_of_work(db) as uow:
                state = await uow.session.get(AgentState, "paper")
        except Exception:  # tables not there yet, or locked by the writer: nothing to see
            return -1
        finally:
            await db.dispose()
        checkpoint = None if state is None else state.checkpoint
        return int((checkpoint or {}).get("bar", -1))

    return asyncio.run(read())


def _started(process: subprocess.Popen[str], url: str, after: int, wait_s: float = 60) -> None:
    """Wait until the agent has stepped past bar ``after`` (or exited): start-up is imports
    and data loading, whose time depends on the machine, so kills are timed from here."""
    deadline = time.monotonic() + wait_s
    while process.poll() is None and time.monotonic() < deadline and _bar(url) <= after:
        time.sleep(0.05)


def _kill_and_restart(env: dict[str, str], kills: int, seed: int) -> tuple[int, str]:
    """Start the agent ``kills`` times, each killed a random moment after it has begun to
    step (some kills before that), then let it finish; the number of kills that hit a
    running process and the last run's output."""
    rng = random.Random(seed)
    landed = 0
    url = env["FFE__DATABASE__URL"]
    for number in range(kills):
        process = _agent(env)
        if number % 3 != 2:  # two in three kills land while it trades, the rest at start-up
            _started(process, url, _bar(url))
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is not None:  # it reached the end of the data first
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err[-2000:]
            return landed, out
        process.send_signal(signal.SIGKILL)
        landed += 1
        process.communicate(timeout=60)
    process = _agent(env)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    return landed, out


def _expected(tmp_path):
    market = load_market(DataCatalog(tmp_path), ["SP500"], start=START)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    config = BacktestConfig(cash=10_000.0, fill=FillModel(commission=0.002), lot_size=1.0)
    return run_backtest(market, make_strategy("sma_cross", {"fast": 10, "slow": 20}), config, risk)


async def _migrate(url: str) -> None:
    db = Database(url)
    await migrate.upgrade(db)
    await db.dispose()


async def _journal(url: str) -> dict:
    db = Database(url)
    try:
        async with unit_of_work(db) as uow:
            session = uow.session
            state = await session.get(AgentState, "paper")
            run_id = state.run_id
            run = await session.get(Run, run_id)
            count = select(func.count(Order.id)).where(Order.run_id == run_id)
            distinct = select(func.count(func.distinct(Order.client_order_id))).where(
                Order.run_id == run_id
            )
            fills = select(Fill.order_id, func.count()).where(Fill.run_id == run_id)
            twice = await session.execute(fills.group_by(Fill.order_id).having(func.count() > 1))
            others = select(func.count(Order.id)).where(Order.run_id != run_id)
            reconciles = (
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "agent.reconcile")
            )
            return {
                "run": run,
                "trades": await uow.journal.trades(run_id),
                "equity": [p.equity for p in await uow.journal.equity(run_id)],
                "orders": (await session.execute(count)).scalar_one(),
                "distinct": (await session.execute(distinct)).scalar_one(),
                "filled_twice": twice.all(),
                "other_orders": (await session.execute(others)).scalar_one(),
                "reconciles": (await session.execute(reconciles)).scalar_one(),
                "owner": state.owner,
            }
    finally:
        await db.dispose()


def _check_kills(url: str, tmp_path, seed: int) -> None:
    env = {
        **os.environ,
        "FFE__DATA__DIR": str(tmp_path / "data"),
        "FFE__DATABASE__URL": url,
        "FFE__AGENT__FLUSH_EVERY": "16",
        "FFE__DATABASE__AUTO_UPGRADE": "always",
        # The run _expected builds: whole units, no slippage, no drawdown halt.
        "FFE__BACKTEST__LOT_SIZE": "1",
        "FFE__BACKTEST__SLIPPAGE_BPS": "0",
        "FFE__RISK__MAX_DRAWDOWN": "none",
    }
    expected = _expected(tmp_path)
    asyncio.run(_migrate(url))  # the agent is under test here, not a kill during migration

    landed, out = _kill_and_restart(env, kills=6, seed=seed)
    found = asyncio.run(_journal(url))

    assert landed >= 3, "too few kills hit a running agent for the test to mean anything"
    assert json.loads(out)["resumed"] is True
    assert found["run"].status == "finished"
    assert found["trades"] == expected.trades
    np.testing.assert_allclose(found["equity"], expected.equity, rtol=1e-12)
    assert found["orders"] == len(expected.orders) == found["distinct"]
    assert found["filled_twice"] == []
    assert found["other_orders"] == 0  # runs orphaned by an early kill never sent an order
    assert found["reconciles"] >= 2  # every start reconciled before acting
    assert found["owner"] is None  # the lease was given back at the end


def test_kill_when_sigkilled_repeatedly_on_sqlite_then_same_as_uninterrupted(tmp_path):
    _check_kills(f"sqlite:///{tmp_path / 'journal.db'}", tmp_path, seed=1)


def test_kill_when_sigkilled_repeatedly_on_postgresql_then_same_as_uninterrupted(
    tmp_path, postgres_url
):
    _check_kills(postgres_url, tmp_path, seed=2)
