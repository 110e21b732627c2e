"""ffe against backtesting.py on one symbol: sma_cross 10/20 over the bundled S&P 500 bars.

What is timed is what a user waits for: ffe's ``run_backtest`` followed by reading
``result.stats``, against backtesting.py's ``Backtest.run`` (which computes its statistics
inside). Both are warmed up, then timed in turns (the headline: each run starts after the
other engine's, caches cold), then each in a row (caches warm, as in a parameter sweep); the
medians are compared. The run fails (exit 2) when the engines did not close the same trades.

The report names the ffe build it ran: compiled (mypyc, as ``make bench`` installs it) or pure
Python. A compiled run then runs this benchmark again in a subprocess on the pure-Python
sources in ``src/``, so both builds' ratios come from the same ``make bench``.

    python -m bench.bench_single_asset [--repeats 30] [--strict] [--no-pure]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import SMA

from bench.common import (
    PURE,
    Timing,
    consecutive,
    ffe_build,
    interleaved,
    machine,
    table,
    utc_now,
    verdict,
    versions,
    write_result,
)
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.result import BacktestResult
from ffe.data import BundledBarSource, load_market
from ffe.decide import make_strategy
from ffe.domain import MarketData
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution import FillModel
from ffe.risk import RiskEngine

TARGET_RATIO = 20.0
ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "SP500"
FAST, SLOW = 10, 20
COMMISSION = 0.002
# Enough that both engines can always afford a unit, so every signal is a trade in both
# (they size from different prices; see tests/integration/test_parity_backtesting_py.py).
CASH = 1_000_000.0


class SmaCross(Strategy):
    """backtesting.py's documented example strategy."""

    n1 = FAST
    n2 = SLOW

    def init(self) -> None:
        self.sma1 = self.I(SMA, self.data.Close, self.n1)
        self.sma2 = self.I(SMA, self.data.Close, self.n2)

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.sell()


def bars_frame(market: MarketData) -> pd.DataFrame:
    """The first symbol of ``market`` in backtesting.py's column layout."""
    columns = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
    return pd.DataFrame(
        {theirs: getattr(market, ours)[:, 0] for theirs, ours in columns.items()},
        index=pd.DatetimeIndex(market.times).tz_localize("UTC"),
    )


def ffe_case(market: MarketData, **config: Any) -> Callable[[], BacktestResult]:
    strategy = make_strategy("sma_cross", {"fast": FAST, "slow": SLOW})
    # Whole units and no drawdown halt, as the peers trade (not ffe's defaults).
    config = {"lot_size": WHOLE_UNITS, **config}
    settings = BacktestConfig(cash=CASH, fill=FillModel(commission=COMMISSION), **config)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)

    def run(with_stats: bool = True) -> BacktestResult:
        result = run_backtest(market, strategy, settings, risk)
        if with_stats:
            _ = result.stats
        return result

    return run


def backtesting_py_case(market: MarketData) -> Callable[[], pd.Series]:
    backtest = Backtest(
        bars_frame(market), SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True
    )
    return backtest.run


def trade_keys_ffe(result: BacktestResult) -> list[tuple[Any, ...]]:
    return [
        (
            pd.Timestamp(t.entry_time),
            pd.Timestamp(t.exit_time),
            t.entry_price,
            t.exit_price,
            t.quantity > 0,
        )
        for t in result.trades
    ]


def trade_keys_backtesting_py(stats: pd.Series) -> list[tuple[Any, ...]]:
    return [
        (
            pd.Timestamp(t.EntryTime),
            pd.Timestamp(t.ExitTime),
            float(t.EntryPrice),
            float(t.ExitPrice),
            t.Size > 0,
        )
        for t in stats["_trades"].itertuples()
    ]


def first_difference(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> str | None:
    """None when the trade lists agree (prices to 1e-9 relative), else where they part."""
    for number, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        same_prices = all(
            math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a[2:4], b[2:4], strict=True)
        )
        if a[:2] != b[:2] or a[4] != b[4] or not same_prices:
            return f"trade {number}: ffe {a} vs backtesting.py {b}"
    if len(ours) != len(theirs):
        return f"ffe closed {len(ours)} trades, backtesting.py {len(theirs)}"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs of each engine")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each engine")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 below {TARGET_RATIO}x")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON result")
    parser.add_argument(
        "--no-pure",
        action="store_true",
        help="on a compiled build, do not also time the pure-Python ffe from src/",
    )
    # Internal: how the compiled run gets the pure-Python run's figures back.
    parser.add_argument("--summary-to", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(market: MarketData, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved timings of both engines (and ffe diagnostics), then each engine's runs
    back to back, and whether the two engines closed the same trades."""
    ffe_run = ffe_case(market)
    cases = {
        "ffe": ffe_run,
        "backtesting.py": backtesting_py_case(market),
        # Diagnostics for whoever optimises the engine; not part of the comparison.
        "ffe, run without stats": lambda: ffe_run(with_stats=False),
        "ffe, no look-ahead check": ffe_case(market, check_lookahead=False),
    }
    timings = interleaved(cases, repeats=args.repeats, warmup=args.warmup)
    ours = trade_keys_ffe(timings["ffe"].last)
    theirs = trade_keys_backtesting_py(timings["backtesting.py"].last)
    # A run right after another engine's starts with caches full of the other's data; a run
    # after one of its own (as in a parameter sweep) does not. Short runs feel that most.
    warm = {name: consecutive(cases[name], repeats=args.repeats) for name in list(cases)[:2]}
    return {
        "interleaved": timings,
        "back_to_back": warm,
        "trades": len(ours),
        "difference": first_difference(ours, theirs),
    }


def ratios(timings: dict[str, Timing]) -> dict[str, float]:
    ffe, peer = timings["ffe"], timings["backtesting.py"]
    return {"median": peer.median / ffe.median, "best": peer.best / ffe.best}


def print_report(measured: dict[str, Any], bars: int, args: argparse.Namespace) -> None:
    print(
        f"sma_cross {FAST}/{SLOW} on {SYMBOL}: {bars:,} daily bars, commission {COMMISSION}; "
        f"{args.warmup} warm-up runs, then {args.repeats} runs of each taking turns "
        f"(interleaved) and {args.repeats} of each in a row (back to back)"
    )
    print(f"ffe build: {measured['build']}")
    rows = [
        [f"{name} ({mode.replace('_', ' ')})", t.median * 1e3, t.best * 1e3, bars / t.median]
        for mode in ("interleaved", "back_to_back")
        for name, t in measured[mode].items()
    ]
    print(table(["engine", "median ms", "min ms", "bars/s"], rows))
    headline, warm = ratios(measured["interleaved"]), ratios(measured["back_to_back"])
    print(
        f"\nspeed-up ffe / backtesting.py, interleaved: {headline['median']:.1f}x median, "
        f"{headline['best']:.1f}x best (target >= {TARGET_RATIO:.0f}x): "
        f"{verdict(headline['median'] >= TARGET_RATIO)}"
    )
    print(f"speed-up back to back: {warm['median']:.1f}x median, {warm['best']:.1f}x best")
    difference = measured["difference"]
    print(
        f"trades: {measured['trades']} closed; identical in both engines: "
        f"{'yes' if difference is None else 'NO - ' + difference}"
    )


def summary(measured: dict[str, Any], bars: int) -> dict[str, Any]:
    """What one run measured, for the JSON result (and from the pure-Python subprocess)."""
    headline = ratios(measured["interleaved"])
    return {
        "ffe_build": measured["build"],
        "timings": {
            mode: {
                name: t.as_dict() | {"bars_per_s": bars / t.median}
                for name, t in measured[mode].items()
            }
            for mode in ("interleaved", "back_to_back")
        },
        "ratio_median": headline["median"],
        "ratio_best": headline["best"],
        "ratio_back_to_back": ratios(measured["back_to_back"]),
        "trades": measured["trades"],
        "trades_identical": measured["difference"] is None,
        "trade_difference": measured["difference"],
    }


def time_pure_python(args: argparse.Namespace) -> tuple[dict[str, Any] | None, int]:
    """This benchmark again, in a subprocess that imports ffe from the sources in ``src/``
    (pure Python), with the same repeats: its summary (None if it has none) and exit code."""
    source = ROOT / "src"
    if not (source / "ffe").is_dir():
        print("\nno src/ffe beside the benchmark: the pure-Python comparison is skipped")
        return None, 0
    path = os.pathsep.join(p for p in (str(source), os.environ.get("PYTHONPATH")) if p)
    print("\nThe same benchmark on pure-Python ffe (src/, in a subprocess):", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "pure.json"
        command = [sys.executable, "-m", "bench.bench_single_asset", "--no-write", "--no-pure"]
        command += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        command += ["--summary-to", str(out)]
        env = os.environ | {"PYTHONPATH": path}
        code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
        pure = json.loads(out.read_text()) if out.exists() else None
    if pure is not None and pure["ffe_build"] != PURE:
        print(f"the subprocess ran {pure['ffe_build']} ffe, not pure Python: comparison dropped")
        return None, code
    return pure, code


def print_builds(measured: dict[str, Any], pure: dict[str, Any]) -> None:
    """Both builds side by side: the ratio each reached against backtesting.py (each in its
    own process) and ffe's own median time."""
    ours = measured["interleaved"]["ffe"].median, measured["back_to_back"]["ffe"].median
    theirs = pure["timings"]["interleaved"]["ffe"]["median_s"]
    theirs_warm = pure["timings"]["back_to_back"]["ffe"]["median_s"]
    rows = [
        [
            measured["build"],
            ratios(measured["interleaved"])["median"],
            ratios(measured["back_to_back"])["median"],
            ours[0] * 1e3,
            ours[1] * 1e3,
        ],
        [
            f"{pure['ffe_build']} (subprocess)",
            pure["ratio_median"],
            pure["ratio_back_to_back"]["median"],
            theirs * 1e3,
            theirs_warm * 1e3,
        ],
    ]
    headers = ["ffe build", "x interleaved", "x back to back", "ffe ms interl.", "ffe ms b2b"]
    print("\nBoth builds (ratios are medians against backtesting.py in the same process):")
    print(table(headers, rows))
    print(
        f"compiled ffe takes {ours[0] / theirs:.0%} of pure-Python ffe's time interleaved, "
        f"{ours[1] / theirs_warm:.0%} back to back"
    )


def payload(
    measured: dict[str, Any],
    bars: int,
    args: argparse.Namespace,
    load: Any,
    pure: dict[str, Any] | None,
) -> Any:
    headline = ratios(measured["interleaved"])
    return {
        "benchmark": "single_asset",
        "date": utc_now(),
        "workload": {
            "symbol": SYMBOL,
            "bars": bars,
            "strategy": "sma_cross",
            "params": {"fast": FAST, "slow": SLOW},
            "commission": COMMISSION,
            "cash": CASH,
            "fill": "next open",
        },
        "method": {
            "repeats": args.repeats,
            "warmup": args.warmup,
            "headline": "interleaved medians",
            "ffe_timed": "run_backtest + result.stats",
            "backtesting_py_timed": "Backtest.run",
        },
        **summary(measured, bars),
        "target_ratio": TARGET_RATIO,
        "passed": headline["median"] >= TARGET_RATIO,
        # The pure-Python ffe timed right after, in a subprocess (None when this run was pure
        # Python itself, or with --no-pure).
        "pure_python": pure,
        "versions": versions("ffe", "numpy", "pandas", "backtesting"),
        "machine": machine() | {"load_average_before": load},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # backtesting.py notes that the last position stays open, which is the intended behaviour.
    warnings.filterwarnings("ignore", message="Some trades remain open", category=UserWarning)
    market = load_market(BundledBarSource(), [SYMBOL])
    load_before = machine()["load_average_1_5_15"]
    measured = measure(market, args) | {"build": ffe_build()}
    print_report(measured, market.n_bars, args)
    if args.summary_to is not None:
        args.summary_to.write_text(json.dumps(summary(measured, market.n_bars)))
    pure, pure_code = None, 0
    if measured["build"] != PURE and not args.no_pure:
        pure, pure_code = time_pure_python(args)
        if pure is not None:
            print_builds(measured, pure)
    if not args.no_write:
        result = payload(measured, market.n_bars, args, load_before, pure)
        path = write_result("single_asset", result)
        print(f"wrote {path.relative_to(path.parents[2])}")
    if measured["difference"] is not None or pure_code == 2:
        return 2
    ratio = ratios(measured["interleaved"])["median"]
    return 1 if args.strict and ratio < TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
