"""The paper agent's speed: replay throughput and the agent's own overhead per step.

The paper agent replays the bundled S&P 500 (5,031 daily bars) with ``sma_cross`` (10/20)
through the simulated broker, journaling into a fresh SQLite file as it goes (decisions,
verdicts, orders, fills, trades, one equity point per bar, checkpoints). Reported:

- throughput: bars per second over the whole replay, start-up excluded, against 1,000;
- step overhead: each step's wall time (fills, sizing, risk, orders, journal buffering and its
  periodic writes) minus the time spent inside the strategy; p99 against 1 ms;
- beside it, the backtest of the same bars, config and strategy in the same process: the
  agent/backtest time ratio says what stepping bar by bar and journaling cost, and the trades
  are checked to be the same.

    python -m bench.bench_agent [--repeats N] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ffe_build, machine, table, utc_now, verdict, versions, write_result
from ffe.agent.runner import paper_agent
from ffe.agent.step import AgentConfig
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import load_market
from ffe.data.bundled import BundledBarSource
from ffe.decide.strategy import make_strategy
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution.fill_model import FillModel
from ffe.risk.engine import RiskEngine
from ffe.store import migrate
from ffe.store.database import Database

BARS_PER_S = 1000.0
STEP_P99_MS = 1.0
PARAMS = {"fast": 10, "slow": 20}


def _risk() -> RiskEngine:
    return RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)


async def _replay(market: Any, folder: Path) -> dict[str, Any]:
    db = Database(f"sqlite:///{folder / 'journal.db'}")
    await migrate.upgrade(db)
    config = AgentConfig(cash=10_000.0, fill=FillModel(commission=0.002), lot_size=WHOLE_UNITS)
    agent = paper_agent(db, market, make_strategy("sma_cross", PARAMS), PARAMS, config, _risk())
    agent.time_steps = True
    started = time.perf_counter()
    report = await agent.run()
    seconds = time.perf_counter() - started
    await db.dispose()
    assert agent.core is not None
    steps = np.array(agent.step_seconds) * 1e3
    return {
        "seconds": seconds,
        "bars": report.bars,
        "bars_per_s": report.bars / seconds,
        "strategy_s": agent.core.strategy_seconds,
        "overhead_p50_ms": float(np.percentile(steps, 50)),
        "overhead_p99_ms": float(np.percentile(steps, 99)),
        "overhead_max_ms": float(steps.max()),
        "trades": agent.result(agent.core).trades,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    market = load_market(BundledBarSource(), ["SP500"])
    runs, backtests = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            runs.append(asyncio.run(_replay(market, Path(folder))))
        started = time.perf_counter()
        config = BacktestConfig(
            cash=10_000.0, fill=FillModel(commission=0.002), lot_size=WHOLE_UNITS
        )
        backtest = run_backtest(market, make_strategy("sma_cross", PARAMS), config, _risk())
        backtests.append(time.perf_counter() - started)
    same = all(run["trades"] == backtest.trades for run in runs)
    best = max(runs, key=lambda r: r["bars_per_s"])
    p99 = float(np.median([r["overhead_p99_ms"] for r in runs]))
    results = {
        "throughput": {
            "bars_per_s": best["bars_per_s"],
            "target": BARS_PER_S,
            "passed": best["bars_per_s"] >= BARS_PER_S,
        },
        "step_overhead": {
            "p99_ms": p99,
            "p50_ms": best["overhead_p50_ms"],
            "max_ms": best["overhead_max_ms"],
            "target_ms": STEP_P99_MS,
            "passed": p99 < STEP_P99_MS,
        },
        "beside_backtest": {
            "agent_s": best["seconds"],
            "backtest_s": min(backtests),
            "ratio": best["seconds"] / min(backtests),
            "same_trades": same,
        },
        "bars": best["bars"],
        "strategy_s": best["strategy_s"],
    }
    rows = [
        [
            "replay (bars/s)",
            f"{best['bars_per_s']:.0f}",
            BARS_PER_S,
            f"{best['bars_per_s'] / BARS_PER_S:.1f}x",
            verdict(results["throughput"]["passed"]),
        ],
        [
            "step overhead p99 (ms)",
            f"{p99:.3f}",
            STEP_P99_MS,
            f"{STEP_P99_MS / p99:.1f}x",
            verdict(results["step_overhead"]["passed"]),
        ],
    ]
    print(table(["case", "measured", "target", "target / measured", "verdict"], rows))
    ratio = results["beside_backtest"]["ratio"]
    print(
        f"agent {best['seconds']:.2f} s vs backtest {min(backtests) * 1e3:.1f} ms on the same "
        f"bars ({ratio:.0f}x), same trades: {same}; strategy {best['strategy_s']:.2f} s; "
        f"overhead p50 {best['overhead_p50_ms']:.3f} ms; ffe build: {ffe_build()}"
    )
    payload = {
        "benchmark": "agent",
        "when": utc_now(),
        "machine": machine(),
        "versions": versions("sqlalchemy", "aiosqlite", "numpy"),
        "build": ffe_build(),
        **results,
    }
    if not args.no_write:
        print(f"written to {write_result('agent', payload)}")
    ok = results["throughput"]["passed"] and results["step_overhead"]["passed"] and same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
