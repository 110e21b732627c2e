"""ffe against backtesting.py on one symbol: sma_cross 10/20 over the bundled S&P 500 bars.

What is timed is what a user waits for: ffe's ``run_backtest`` followed by reading
``result.stats``, against backtesting.py's ``Backtest.run`` (which computes its statistics
inside). Both are warmed up, then timed in turns; the medians are compared. The run fails
(exit 2) when the two engines did not close the same trades.

    python -m bench.bench_single_asset [--repeats 30] [--strict]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import SMA

from bench.common import interleaved, machine, table, utc_now, verdict, versions, write_result
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.result import BacktestResult
from ffe.data import BundledBarSource, load_market
from ffe.decide import make_strategy
from ffe.domain import MarketData
from ffe.execution import FillModel

TARGET_RATIO = 20.0
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
    settings = BacktestConfig(cash=CASH, fill=FillModel(commission=COMMISSION), **config)

    def run(with_stats: bool = True) -> BacktestResult:
        result = run_backtest(market, strategy, settings)
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # backtesting.py notes that the last position stays open, which is the intended behaviour.
    warnings.filterwarnings("ignore", message="Some trades remain open", category=UserWarning)
    market = load_market(BundledBarSource(), [SYMBOL])
    ffe_run = ffe_case(market)
    ffe_unchecked = ffe_case(market, check_lookahead=False)
    cases = {
        "ffe": ffe_run,
        "backtesting.py": backtesting_py_case(market),
        # Diagnostics for whoever optimises the engine; not part of the comparison.
        "ffe, run without stats": lambda: ffe_run(with_stats=False),
        "ffe, no look-ahead check": ffe_unchecked,
    }
    load_before = machine()["load_average_1_5_15"]
    timings = interleaved(cases, repeats=args.repeats, warmup=args.warmup)
    ours = trade_keys_ffe(timings["ffe"].last)
    difference = first_difference(ours, trade_keys_backtesting_py(timings["backtesting.py"].last))

    bars = market.n_bars
    ratio = timings["backtesting.py"].median / timings["ffe"].median
    ratio_best = timings["backtesting.py"].best / timings["ffe"].best
    print(
        f"sma_cross {FAST}/{SLOW} on {SYMBOL}: {bars:,} daily bars, commission {COMMISSION}, "
        f"median of {args.repeats} interleaved runs after {args.warmup} warm-up runs"
    )
    print(
        table(
            ["engine", "median ms", "min ms", "bars/s"],
            [[name, t.median * 1e3, t.best * 1e3, bars / t.median] for name, t in timings.items()],
        )
    )
    print(
        f"\nspeed-up ffe / backtesting.py: {ratio:.1f}x median, {ratio_best:.1f}x best "
        f"(target >= {TARGET_RATIO:.0f}x): {verdict(ratio >= TARGET_RATIO)}"
    )
    print(
        f"trades: {len(ours)} closed; identical in both engines: "
        f"{'yes' if difference is None else 'NO - ' + difference}"
    )

    if not args.no_write:
        path = write_result(
            "single_asset",
            {
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
                    "interleaved": True,
                    "ffe_timed": "run_backtest + result.stats",
                    "backtesting_py_timed": "Backtest.run",
                },
                "timings": {
                    name: t.as_dict() | {"bars_per_s": bars / t.median}
                    for name, t in timings.items()
                },
                "ratio_median": ratio,
                "ratio_best": ratio_best,
                "target_ratio": TARGET_RATIO,
                "passed": ratio >= TARGET_RATIO,
                "trades": len(ours),
                "trades_identical": difference is None,
                "trade_difference": difference,
                "versions": versions("ffe", "numpy", "pandas", "backtesting"),
                "machine": machine() | {"load_average_before": load_before},
            },
        )
        print(f"wrote {path.relative_to(path.parents[2])}")
    if difference is not None:
        return 2
    return 1 if args.strict and ratio < TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
