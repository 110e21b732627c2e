"""ffe's parameter sweep against vectorbt's broadcast sweep: sma_cross on the bundled S&P 500.

The same grid for both: fast 5..60 step 2 by slow 20..250 step 3, the pairs with fast < slow
(2,009 points), over 5,031 daily bars; orders decided at a bar's close fill at the next bar's
open with 0.2% commission, from 10,000 of cash, whole units. ffe runs ``run_sweep`` (what
``ffe backtest sweep --jobs N`` runs) on a local pool of ``--jobs`` processes; vectorbt runs
``MA.run`` over every window of the grid, its crossings, ``Portfolio.from_signals`` (signals
shifted a bar, filled at the open) and the Sharpe ratio of every column, in one process (numba,
single-threaded). The whole bench process, and so ffe's pool, is pinned to the same ``--cores``.

Each side runs once untimed (for vectorbt that compiles its numba functions: the first run's
extra time is reported as JIT compile time), then ``--rounds`` timed rounds taking turns, the
order reversed every round; points per second come from the median round. Timed: from the
market in memory to every point's stats and the best point by Sharpe. Both best points are
reported; the run fails (exit 2) when they differ. ``--before-rounds`` times the engine path
(every point on the one-order-at-a-time engine, ``batch=False``) for where the sweep started.

    python -m bench.bench_sweep [--rounds 5] [--jobs 2] [--cores 2] [--strict] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.common import ffe_build, machine, table, utc_now, verdict, versions, write_result
from ffe.backtest import sweep
from ffe.backtest.engine import BacktestConfig
from ffe.backtest.sweep import SweepRow, run_sweep
from ffe.compute import LocalExecutor
from ffe.data import BundledBarSource, load_market
from ffe.domain import MarketData
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution import FillModel
from ffe.risk import RiskEngine

TARGET_RATIO = 2.0
SYMBOL = "SP500"
FAST, SLOW = range(5, 61, 2), range(20, 251, 3)
COMMISSION = 0.002
CASH = 10_000.0  # ffe's default backtest cash

Best = tuple[int, int]


def grid() -> list[dict[str, int]]:
    return [{"fast": f, "slow": s} for f in FAST for s in SLOW if f < s]


class CountedExecutor:
    """A ``LocalExecutor`` that notes how many tasks the last sweep sent it: the sweep cuts
    its points into tasks, and a single task runs in the calling process, with no pool."""

    def __init__(self, jobs: int) -> None:
        self._inner = LocalExecutor(jobs)
        self.tasks = 0

    @property
    def workers(self) -> int:
        return self._inner.workers

    def map(self, fn: Any, items: Any, shared: Any, **options: Any) -> Any:
        todo = list(items)
        self.tasks = len(todo)
        return self._inner.map(fn, todo, shared, **options)

    def open(self, fn: Any, shared: Any) -> Any:
        return self._inner.open(fn, shared)


def ffe_sweep(
    market: MarketData,
    points: list[dict[str, int]],
    executor: CountedExecutor,
    batch: bool = True,
    task: int | None = None,
) -> Callable[[], Best]:
    """ffe's sweep; ``task`` overrides how many kernel points a task holds (to force a pool)."""
    config = BacktestConfig(
        cash=CASH, fill=FillModel(at="next_open", commission=COMMISSION), lot_size=WHOLE_UNITS
    )
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)

    def run() -> Best:
        chosen = sweep._KERNEL_TASK
        sweep._KERNEL_TASK = task or chosen
        try:
            rows = run_sweep(
                market, "sma_cross", points, config, risk, executor=executor, batch=batch
            )
        finally:
            sweep._KERNEL_TASK = chosen
        return _best(rows)

    return run


def _best(rows: list[SweepRow]) -> Best:
    def sharpe(row: SweepRow) -> float:
        value = row.stats.get("sharpe")
        return float(value) if isinstance(value, int | float) else -np.inf

    best = max(rows, key=sharpe)  # the first of equals, as vectorbt's idxmax
    return int(best.params["fast"]), int(best.params["slow"])


def vectorbt_sweep(market: MarketData, points: list[dict[str, int]]) -> Callable[[], Best]:
    import vectorbt as vbt

    index = pd.DatetimeIndex(market.times)
    close = pd.Series(market.close[:, 0], index=index)
    open_ = pd.Series(market.open[:, 0], index=index)
    fast = [p["fast"] for p in points]
    slow = [p["slow"] for p in points]
    vbt.settings.returns["year_freq"] = "252 days"  # ffe annualises daily bars by 252

    def run() -> Best:
        fast_ma = vbt.MA.run(close, window=fast, short_name="fast")
        slow_ma = vbt.MA.run(close, window=slow, short_name="slow")
        # Decided at the close of a crossing, filled at the next bar's open, as in ffe.
        up = fast_ma.ma_crossed_above(slow_ma).vbt.fshift(1, fill_value=False)
        down = fast_ma.ma_crossed_below(slow_ma).vbt.fshift(1, fill_value=False)
        portfolio = vbt.Portfolio.from_signals(
            close, entries=up, short_entries=down, price=open_, fees=COMMISSION,
            size=np.inf, size_granularity=1, init_cash=CASH, freq="1D",
        )  # fmt: skip
        best = portfolio.sharpe_ratio().idxmax()
        return int(best[0]), int(best[1])

    return run


def timed_rounds(cases: dict[str, Callable[[], Best]], rounds: int) -> dict[str, dict[str, Any]]:
    """One untimed run of each case, then ``rounds`` timed rounds taking turns."""
    found: dict[str, dict[str, Any]] = {}
    for name, case in cases.items():
        start = time.perf_counter()
        best = case()
        found[name] = {"first_run_s": time.perf_counter() - start, "samples": [], "best": best}
    names = list(cases)
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            best = cases[name]()
            found[name]["samples"].append(time.perf_counter() - start)
            found[name]["best"] = best
    for entry in found.values():
        entry["median_s"] = statistics.median(entry["samples"])
        entry["min_s"], entry["max_s"] = min(entry["samples"]), max(entry["samples"])
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each side")
    parser.add_argument("--jobs", type=int, default=2, help="ffe's worker processes")
    parser.add_argument("--cores", type=int, default=2, help="cores the bench is pinned to")
    parser.add_argument("--before-rounds", type=int, default=1, help="rounds of the engine path")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 below {TARGET_RATIO}x")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON result")
    return parser.parse_args(argv)


def pin(cores: int) -> list[int] | None:
    """Pin this process (and the pool it spawns) to the first ``cores`` usable cores."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    chosen = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, chosen)
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # vectorbt's deprecation chatter
    pinned = pin(args.cores)
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    market = load_market(BundledBarSource(), [SYMBOL])
    points = grid()
    build = ffe_build()
    print(f"sma_cross sweep, {len(points):,} points on {SYMBOL} ({market.n_bars:,} bars), "
          f"ffe {build}, pinned to cores {pinned}")  # fmt: skip
    default, forced, before = (CountedExecutor(args.jobs) for _ in range(3))
    half = len(points) // args.jobs  # the smallest kernel task that makes one per process
    cases = {
        f"ffe sweep, jobs={args.jobs}": ffe_sweep(market, points, default),
        "vectorbt broadcast": vectorbt_sweep(market, points),
        f"ffe sweep forced onto {args.jobs} processes": ffe_sweep(
            market, points, forced, task=half
        ),
    }
    found = timed_rounds(cases, args.rounds)
    if args.before_rounds > 0:
        engine = ffe_sweep(market, points, before, batch=False)
        name = f"ffe engine path (batch=False), jobs={args.jobs}"
        found.update(timed_rounds({name: engine}, args.before_rounds))
    executors = dict(zip(found, (default, None, forced, before), strict=False))
    for name, executor in executors.items():
        if executor is not None:
            found[name]["tasks"] = executor.tasks
            found[name]["processes"] = min(args.jobs, executor.tasks) if executor.tasks > 1 else 1
    ffe, vbt_ = (found[name] for name in list(cases)[:2])
    ratio = vbt_["median_s"] / ffe["median_s"]
    same_best = ffe["best"] == vbt_["best"]
    report(found, len(points), ratio, same_best)
    if not args.no_write:
        extra = {"ffe_build": build, "pinned_cores": pinned, "bars": market.n_bars}
        extra["load_at_start"] = load_at_start
        payload = result(found, len(points), ratio, same_best, args, extra)
        print(f"written to {write_result('sweep', payload)}")
    if not same_best:
        return 2
    return 1 if args.strict and ratio < TARGET_RATIO else 0


def report(found: dict[str, dict[str, Any]], n: int, ratio: float, same_best: bool) -> None:
    rows = [
        [name, n / e["median_s"], e["median_s"], e["min_s"], e["max_s"], e.get("processes", 1),
         str(e["best"])]
        for name, e in found.items()
    ]  # fmt: skip
    headers = ["case", "points/s", "median s", "min s", "max s", "processes", "best (fast, slow)"]
    print(table(headers, rows))
    vbt_ = found["vectorbt broadcast"]
    jit = vbt_["first_run_s"] - vbt_["median_s"]
    print(f"vectorbt's first run took {vbt_['first_run_s']:.2f} s: about {jit:.2f} s of numba JIT")
    print(f"ffe / vectorbt: {ratio:.2f}x points per second (target {TARGET_RATIO}x) "
          f"{verdict(ratio >= TARGET_RATIO)}; same best point: {same_best}")  # fmt: skip


def result(
    found: dict[str, dict[str, Any]],
    n: int,
    ratio: float,
    same_best: bool,
    args: argparse.Namespace,
    extra: dict[str, Any],
) -> dict[str, Any]:
    vbt_ = found["vectorbt broadcast"]
    return {
        "date": utc_now(),
        "ffe_build": extra["ffe_build"],
        "machine": {
            **machine(),  # its load average is the one at the end
            "load_average_at_start": extra["load_at_start"],
            "pinned_cores": extra["pinned_cores"],
        },
        "versions": versions("numpy", "pandas", "vectorbt", "numba"),
        "grid": {
            "points": n,
            "fast": [FAST.start, FAST.stop - 1, FAST.step],
            "slow": [SLOW.start, SLOW.stop - 1, SLOW.step],
        },
        "bars": extra["bars"],
        "ffe_jobs": args.jobs,
        "rounds": args.rounds,
        "warmup": "one untimed run of each side before the timed rounds",
        "cases": {name: {**e, "points_per_s": n / e["median_s"]} for name, e in found.items()},
        "vectorbt_jit_s": vbt_["first_run_s"] - vbt_["median_s"],
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "same_best_point": same_best,
    }


if __name__ == "__main__":
    sys.exit(main())
