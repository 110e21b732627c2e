"""Live equals backtest for the ensemble, over the whole bundled history: the full-length
companion of ``tests/integration/agent/test_parity.py`` (which covers the last 900 bars).

For each symbol, the ``ensemble`` at its defaults (``-p`` overrides them) is run three ways on
every bar of the bundled daily history: the backtest (``run_backtest``), its decisions
(``EnsembleStrategy.explain``), and the paper agent replaying the same bars on a scratch
SQLite journal, stopped half-way and resumed from its checkpoint. Reported: decisions
compared (time, target, confidence: how many differ, the largest differences), trades equal
or not, and each run's time. Equality is exact; nothing is timed against a peer.

    python -m bench.bench_ensemble_parity [--symbol SP500 --symbol NASDAQ] [-p every=1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, table, utc_now, verdict, versions, write_result
from ffe.agent.runner import paper_agent
from ffe.agent.step import AgentConfig
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import load_market
from ffe.data.bundled import BundledBarSource
from ffe.decide.strategy import make_strategy
from ffe.domain import MarketData
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution.fill_model import FillModel
from ffe.risk.engine import RiskEngine
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import Decision as JournalDecision
from ffe.store.repositories import unit_of_work

FILL = FillModel(commission=0.001)
CASH = 10_000.0


def _risk() -> RiskEngine:
    return RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)


async def _agent(market: MarketData, params: dict[str, str], folder: Path) -> dict[str, Any]:
    """The paper agent over ``market``, stopped at its middle bar and resumed."""
    from sqlalchemy import select

    db = Database(f"sqlite:///{folder / 'journal.db'}")
    await migrate.upgrade(db)
    config = AgentConfig(cash=CASH, fill=FILL, lot_size=WHOLE_UNITS)
    stop_at = market.n_bars // 2
    first = paper_agent(db, market, make_strategy("ensemble", params), params, config, _risk())
    first.watch(on_bar=lambda report: report.bar >= stop_at and first.request_stop())
    stopped = await first.run()
    again = paper_agent(db, market, make_strategy("ensemble", params), params, config, _risk())
    resumed = await again.run()
    async with unit_of_work(db) as uow:
        trades = await uow.journal.trades(resumed.run_id)
        rows = await uow.session.execute(select(JournalDecision).order_by(JournalDecision.id))
        decisions = [(d.time, d.target, d.confidence) for d in rows.scalars()]
    await db.dispose()
    return {
        "stopped": stopped.status,
        "resumed": resumed.resumed,
        "status": resumed.status,
        "stop_at": stop_at,
        "trades": trades,
        "decisions": decisions,
    }


def compare(symbol: str, params: dict[str, str]) -> dict[str, Any]:
    market = load_market(BundledBarSource(), [symbol])
    strategy = make_strategy("ensemble", params)
    began = time.perf_counter()
    batch = strategy.explain(market.history()).decisions  # type: ignore[attr-defined]
    explain_s = time.perf_counter() - began
    began = time.perf_counter()
    backtest = run_backtest(
        market, strategy, BacktestConfig(cash=CASH, fill=FILL, lot_size=WHOLE_UNITS), _risk()
    )
    backtest_s = time.perf_counter() - began
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ffe-parity-") as folder:
        agent = asyncio.run(_agent(market, params, Path(folder)))
    agent_s = time.perf_counter() - began

    expected = [
        (d.time.replace(tzinfo=None), 0.0 if math.isnan(d.target) else d.target, d.confidence)
        for d in batch
    ]
    got = [(t.replace(tzinfo=None), target, c) for t, target, c in agent["decisions"]]
    pairs = list(zip(expected, got, strict=False))
    differ = sum(1 for a, b in pairs if a != b)
    return {
        "symbol": symbol,
        "bars": market.n_bars,
        "params": params,
        "stopped_at_bar": agent["stop_at"],
        "resumed": agent["resumed"],
        "status": agent["status"],
        "decisions": len(expected),
        "agent_decisions": len(got),
        "decisions_differing": differ + abs(len(expected) - len(got)),
        "max_target_diff": max((abs(a[1] - b[1]) for a, b in pairs), default=0.0),
        "max_confidence_diff": max((abs(a[2] - b[2]) for a, b in pairs), default=0.0),
        "trades": len(backtest.trades),
        "agent_trades": len(agent["trades"]),
        "trades_equal": agent["trades"] == backtest.trades,
        "explain_s": round(explain_s, 1),
        "backtest_s": round(backtest_s, 1),
        "agent_s": round(agent_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbol", action="append", help="default: SP500 and NASDAQ")
    parser.add_argument("-p", "--param", action="append", default=[], help="name=value")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    params = dict(p.split("=", 1) for p in args.param)
    results = [compare(symbol, params) for symbol in args.symbol or ["SP500", "NASDAQ"]]
    passed = all(r["decisions_differing"] == 0 and r["trades_equal"] for r in results)
    rows = [
        (
            r["symbol"],
            r["bars"],
            r["decisions"],
            r["decisions_differing"],
            f"{r['trades']} / {r['agent_trades']}",
            f"{r['explain_s']} / {r['backtest_s']} / {r['agent_s']}",
            verdict(r["decisions_differing"] == 0 and r["trades_equal"]),
        )
        for r in results
    ]
    headers = ["symbol", "bars", "decisions", "differing", "trades (bt / agent)", "s", "equal"]
    print(table(headers, rows))
    if not args.no_write:
        payload = {
            "date": utc_now(),
            "machine": machine(),
            "versions": versions("numpy", "statsforecast", "arch"),
            "results": results,
            "passed": passed,
        }
        print(f"wrote {write_result('ensemble_parity', payload)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
