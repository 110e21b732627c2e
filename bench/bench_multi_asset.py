"""ffe on a wide market: monthly cross-sectional momentum over 500 synthetic symbols.

Measures bar-steps per second (symbols x bars / seconds of ``run_backtest`` + ``result.stats``;
generating the market is not timed) and peak memory, in a fresh process so that nothing else
has touched its memory. Then runs backtrader on a slice it finishes in reasonable time, with
the same rule through ``order_target_percent``, and ffe on the same slice, for a speed ratio.

backtrader's semantics differ from ffe's (it sizes at the decision close and may reject an
order it cannot afford at the next open, among others), so the backtrader run is a speed
comparison only, not parity.

    python -m bench.bench_multi_asset [--symbols 500] [--bt-symbols 50] [--strict]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    ffe_build,
    interleaved,
    machine,
    table,
    time_once,
    utc_now,
    verdict,
    versions,
    write_result,
)
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.result import BacktestResult
from ffe.data import SyntheticMarket
from ffe.decide import make_strategy
from ffe.domain import MarketData
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution import FillModel
from ffe.risk import RiskEngine

TARGET_BAR_STEPS = 2_000_000.0
TARGET_MEMORY_MB = 500.0
PARAMS = {"lookback": 126, "top": 0.2, "rebalance": 21}
COMMISSION = 0.002
CASH = 10_000_000.0
MB = 1024.0 * 1024.0
_REPO = Path(__file__).resolve().parents[1]
_FIELDS = ("open", "high", "low", "close", "volume")


# -- ffe ----------------------------------------------------------------------------------


def run_ffe(market: MarketData) -> BacktestResult:
    """What is timed: the backtest and its statistics."""
    # Whole units and no drawdown halt, as the peers trade (not ffe's defaults).
    config = BacktestConfig(cash=CASH, fill=FillModel(commission=COMMISSION), lot_size=WHOLE_UNITS)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    result = run_backtest(market, make_strategy("momentum", PARAMS), config, risk)
    _ = result.stats
    return result


def summary(result: BacktestResult) -> dict[str, Any]:
    return {
        "orders": len(result.orders),
        "trades": len(result.trades),
        "denials": len(result.denials),
        "final_equity": float(result.equity[-1]),
    }


def _rss_mb() -> dict[str, float | None]:
    """Current and peak resident set size from /proc (Linux), else None."""
    values: dict[str, float | None] = {"VmRSS": None, "VmHWM": None}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key = line.split(":", 1)[0]
                if key in values:
                    values[key] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return {"current": values["VmRSS"], "peak": values["VmHWM"]}


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024.0  # bytes vs KiB


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux), so the next peak is the run's own."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def measure_ffe(n_symbols: int, n_bars: int, seed: int, repeats: int) -> dict[str, Any]:
    """Everything about the ffe run on the full market; meant to run in a fresh process."""
    market = SyntheticMarket(n_symbols, n_bars, seed=seed).to_market()
    gc.collect()
    peak_before = _maxrss_mb()  # includes generating the market
    baseline = _rss_mb()["current"]
    reset = _reset_peak_rss()
    cold_seconds, result = time_once(lambda: run_ffe(market))
    run_peak = _maxrss_mb() if reset else None
    facts = summary(result)
    del result
    timing = interleaved({"ffe": lambda: run_ffe(market)}, repeats=repeats, warmup=0)["ffe"]
    gc.collect()
    tracemalloc.start()
    run_ffe(market)
    traced_peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    return {
        "timing": timing.as_dict() | {"cold_s": cold_seconds},
        "result": facts,
        "memory_mb": {
            "process_peak_rss": max(peak_before, _maxrss_mb()),
            "baseline_rss_after_imports_and_market": baseline,
            "run_peak_rss": run_peak,
            "run_increment_rss": None
            if run_peak is None or baseline is None
            else run_peak - baseline,
            "run_tracemalloc_peak": traced_peak,
            "peak_reset_supported": reset,
        },
    }


def ffe_in_fresh_process(args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.bench_multi_asset",
        "--child",
        "--symbols",
        str(args.symbols),
        "--bars",
        str(args.bars),
        "--seed",
        str(args.seed),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(command, cwd=_REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the ffe measurement process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- backtrader ---------------------------------------------------------------------------


def _backtrader_momentum(bt: Any) -> type:
    """The momentum rule as a backtrader strategy (backtrader is imported only when used)."""

    class Momentum(bt.Strategy):  # type: ignore[misc]
        params = (("lookback", 126), ("top", 0.2), ("rebalance", 21))

        def start(self) -> None:
            self.filled = self.rejected = 0

        def next(self) -> None:
            bar, p = len(self) - 1, self.params
            if bar < p.lookback or (bar - p.lookback) % p.rebalance:
                return
            scores = [d.close[0] / d.close[-p.lookback] - 1.0 for d in self.datas]
            ranked = sorted(range(len(scores)), key=lambda k: -scores[k])  # stable, like ffe
            held = ranked[: max(1, math.floor(len(scores) * p.top))]
            for k in sorted(set(range(len(scores))) - set(held)):  # sells first: they free cash
                self.order_target_percent(self.datas[k], 0.0)
            for k in held:
                self.order_target_percent(self.datas[k], 1.0 / len(held))

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.filled += 1
            elif order.status in (order.Margin, order.Rejected):
                self.rejected += 1

    return Momentum


def backtrader_case(market: MarketData) -> Callable[[], dict[str, Any]]:
    """A callable that runs the momentum rule in backtrader over ``market`` from DataFrames
    prepared beforehand: what is timed is building the Cerebro and running it."""
    import backtrader as bt
    import pandas as pd

    strategy = _backtrader_momentum(bt)
    index = pd.DatetimeIndex(market.times)
    frames = [
        pd.DataFrame({f: getattr(market, f)[:, j] for f in _FIELDS}, index=index)
        for j in range(market.n_symbols)
    ]

    def run() -> dict[str, Any]:
        cerebro = bt.Cerebro()
        for symbol, frame in zip(market.symbols, frames, strict=True):
            cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
        cerebro.addstrategy(strategy, **PARAMS)
        cerebro.broker.setcash(CASH)
        cerebro.broker.setcommission(commission=COMMISSION)
        done = cerebro.run()[0]
        return {
            "orders_filled": done.filled,
            "orders_rejected": done.rejected,
            "final_equity": cerebro.broker.getvalue(),
        }

    return run


def compare_on_slice(args: argparse.Namespace) -> dict[str, Any]:
    """ffe and backtrader on the same smaller market, in this process."""
    market = SyntheticMarket(args.bt_symbols, args.bars, seed=args.seed).to_market()
    steps = market.n_symbols * market.n_bars
    timings = interleaved(
        {"backtrader": backtrader_case(market)}, repeats=args.bt_repeats, warmup=0
    ) | interleaved({"ffe": lambda: run_ffe(market)}, repeats=args.repeats, warmup=1)
    ffe, peer = timings["ffe"], timings["backtrader"]
    return {
        "symbols": market.n_symbols,
        "bars": market.n_bars,
        "ffe": ffe.as_dict() | {"bar_steps_per_s": steps / ffe.median} | summary(ffe.last),
        "backtrader": peer.as_dict() | {"bar_steps_per_s": steps / peer.median} | peer.last,
        "ratio_ffe_over_backtrader": peer.median / ffe.median,
    }


# -- report -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed ffe runs (median)")
    parser.add_argument("--bt-symbols", type=int, default=50, help="symbols for backtrader")
    parser.add_argument("--bt-repeats", type=int, default=1, help="timed backtrader runs")
    parser.add_argument("--skip-backtrader", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON result")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def verdicts(full: dict[str, Any]) -> dict[str, bool]:
    memory = full["memory_mb"]
    # Judge the run's own increment where the platform can measure it, else the whole process.
    judged = memory["run_increment_rss"]
    if judged is None:
        judged = memory["process_peak_rss"]
    return {
        "speed": full["bar_steps_per_s"] >= TARGET_BAR_STEPS,
        "memory": judged < TARGET_MEMORY_MB,
    }


def print_report(full: dict[str, Any], sliced: dict[str, Any] | None) -> None:
    rate, memory, passed = full["bar_steps_per_s"], full["memory_mb"], verdicts(full)
    rows = [["ffe, full market", full["symbols"], full["bars"], full["timing"]["median_s"], rate]]
    if sliced:
        rows += [
            [
                f"{engine}, slice",
                sliced["symbols"],
                sliced["bars"],
                sliced[engine]["median_s"],
                sliced[engine]["bar_steps_per_s"],
            ]
            for engine in ("ffe", "backtrader")
        ]
    print(f"momentum {PARAMS}, commission {COMMISSION}; market generation not timed")
    print(f"ffe build: {ffe_build()}")
    print(table(["run", "symbols", "bars", "median s", "bar-steps/s"], rows))
    print(
        f"\nffe bar-steps/s, full market: {rate:,.0f} (target >= {TARGET_BAR_STEPS:,.0f}): "
        f"{verdict(passed['speed'])}"
    )
    print(
        f"ffe memory: process peak RSS {memory['process_peak_rss']:.0f} MB; "
        f"the run adds {_mb(memory['run_increment_rss'])} over "
        f"{_mb(memory['baseline_rss_after_imports_and_market'])} after imports and market "
        f"generation; tracemalloc peak of the run {memory['run_tracemalloc_peak']:.0f} MB "
        f"(target < {TARGET_MEMORY_MB:.0f} MB): {verdict(passed['memory'])}"
    )
    if sliced:
        peer_rate = sliced["backtrader"]["bar_steps_per_s"]
        print(
            f"ffe / backtrader, same slice: {sliced['ratio_ffe_over_backtrader']:,.0f}x; "
            f"ffe full market / backtrader slice: {rate / peer_rate:,.0f}x"
        )
        print("backtrader's order semantics differ from ffe's: a speed comparison, not parity.")


def payload(args: argparse.Namespace, full: dict[str, Any], sliced: Any, load: Any) -> Any:
    return {
        "benchmark": "multi_asset",
        "date": utc_now(),
        "workload": {
            "strategy": "momentum",
            "params": PARAMS,
            "commission": COMMISSION,
            "cash": CASH,
            "seed": args.seed,
            "fill": "next open",
        },
        "method": {
            "timed": "run_backtest + result.stats (market generation excluded)",
            "ffe_full_in_fresh_process": True,
            "repeats": args.repeats,
            "backtrader_repeats": args.bt_repeats,
            "backtrader_timed": "Cerebro setup from prepared DataFrames + run",
            "note": "backtrader is a speed comparison, not parity",
        },
        "ffe_build": ffe_build(),
        "ffe_full": full,
        "slice": sliced,
        "targets": {"bar_steps_per_s": TARGET_BAR_STEPS, "memory_mb": TARGET_MEMORY_MB},
        "passed": verdicts(full),
        "versions": versions("ffe", "numpy", "pandas", "backtrader"),
        "machine": machine() | {"load_average_before": load},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure_ffe(args.symbols, args.bars, args.seed, args.repeats)))
        return 0
    load_before = machine()["load_average_1_5_15"]
    steps = args.symbols * args.bars
    full = ffe_in_fresh_process(args)
    full = {
        "symbols": args.symbols,
        "bars": args.bars,
        "bar_steps": steps,
        "bar_steps_per_s": steps / full["timing"]["median_s"],
    } | full
    sliced = None if args.skip_backtrader else compare_on_slice(args)
    print_report(full, sliced)
    if not args.no_write:
        path = write_result("multi_asset", payload(args, full, sliced, load_before))
        print(f"wrote {path.relative_to(path.parents[2])}")
    return 1 if args.strict and not all(verdicts(full).values()) else 0


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"


if __name__ == "__main__":
    sys.exit(main())
