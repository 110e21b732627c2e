"""The decision engine's three speed targets, on the bundled S&P 500 daily bars.

- step: the live decision step of the ``ensemble`` (all seven models, no refit): the models
  are fitted once on the 500 bars before bar ``--start``, then ``EnsembleDecider.decide``
  runs on each of the next ``--steps`` bars (forecast with every model, learn from the
  outcomes that arrived, combine, size, explain). p50 and p99 of the step against 20 ms.
- walk-forward: ``run_walk_forward`` of ``ensemble`` with monthly refits (every 21 bars)
  over the whole history, ``train=750,test=250``, on every core, against 120 s.
- forecast bench: what ``ffe forecast bench --symbol SP500 --horizon 1 --horizon 5`` does
  (rolling origins of every model, then scoring), on every core, against 300 s.

The targets are absolute: no peer runs these models (TradingAgents needs LLM keys and a
network). Each line is reported as the ratio of the target to the measured time (above 1
meets it).

    python -m bench.bench_decisions [--steps N] [--skip-walk-forward] [--skip-forecast]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from bench.common import machine, table, utc_now, verdict, versions, write_result
from ffe.backtest.engine import BacktestConfig
from ffe.backtest.walkforward import run_walk_forward
from ffe.data import load_market
from ffe.data.bundled import BundledBarSource
from ffe.decide.ensemble import EnsembleDecider, EnsembleStrategy
from ffe.domain.defaults import WHOLE_UNITS
from ffe.execution.fill_model import FillModel
from ffe.forecast.base import Series
from ffe.forecast.evaluate import evaluate
from ffe.forecast.models import DEFAULT_MODELS
from ffe.forecast.rolling import RollingSpec, rolling_forecasts
from ffe.risk import RiskEngine

STEP_P99_MS = 20.0
WALK_FORWARD_S = 120.0
FORECAST_BENCH_S = 300.0


def bench_step(steps: int, start: int) -> dict[str, Any]:
    market = load_market(BundledBarSource(), ["SP500"])
    series = Series("SP500", np.log(market.mark[:, 0]), market.times)
    decider = EnsembleDecider(EnsembleStrategy())
    failed = decider.refit(series.upto(start))
    samples = []
    for t in range(start, start + steps):
        seen = series.upto(t + 1)
        began = time.perf_counter()
        decision = decider.decide(seen)
        samples.append(time.perf_counter() - began)
    ms = np.array(samples) * 1000
    return {
        "steps": steps,
        "models": list(decider.names),
        "failed_fits": failed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "last_rationale": decision.rationale,
        "target_p99_ms": STEP_P99_MS,
        "passed": bool(np.percentile(ms, 99) < STEP_P99_MS),
    }


def bench_walk_forward() -> dict[str, Any]:
    market = load_market(BundledBarSource(), ["SP500"])
    # The figures docs/forecasting.md gives: whole units, no slippage, no drawdown halt.
    config = BacktestConfig(fill=FillModel(commission=0.001), lot_size=WHOLE_UNITS)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    began = time.perf_counter()
    walked = run_walk_forward(market, "ensemble", {}, 750, 250, config, risk)
    seconds = time.perf_counter() - began
    stats = walked.backtest.stats
    return {
        "seconds": seconds,
        "segments": len(walked.segments),
        "decisions": len(walked.backtest.decisions),
        "trades": stats.n_trades,
        "total_return": stats.total_return,
        "sharpe": stats.sharpe,
        "target_s": WALK_FORWARD_S,
        "passed": seconds < WALK_FORWARD_S,
    }


def bench_forecast() -> dict[str, Any]:
    market = load_market(BundledBarSource(), ["SP500"])
    series = Series("SP500", np.log(market.mark[:, 0]), market.times)
    spec = RollingSpec(horizon=5, window=500, refit_every=21)
    began = time.perf_counter()
    panel = rolling_forecasts(series, DEFAULT_MODELS, spec, workers=None)
    result = evaluate(panel, series.values, [1, 5], 500, 21)
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "origins": len(panel.origins),
        "models": list(panel.models),
        "target_s": FORECAST_BENCH_S,
        "passed": seconds < FORECAST_BENCH_S,
        "scores": result.to_dict()["scores"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--start", type=int, default=3000)
    parser.add_argument("--skip-walk-forward", action="store_true")
    parser.add_argument("--skip-forecast", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"step": bench_step(args.steps, args.start)}
    if not args.skip_walk_forward:
        results["walk_forward"] = bench_walk_forward()
    if not args.skip_forecast:
        results["forecast_bench"] = bench_forecast()

    rows = [
        [
            "decision step p99 (ms)",
            f"{results['step']['p99_ms']:.2f}",
            STEP_P99_MS,
            f"{STEP_P99_MS / results['step']['p99_ms']:.1f}x",
            verdict(results["step"]["passed"]),
        ]
    ]
    for key, label in (
        ("walk_forward", "walk-forward (s)"),
        ("forecast_bench", "forecast bench (s)"),
    ):
        if key in results:
            r = results[key]
            rows.append(
                [
                    label,
                    f"{r['seconds']:.1f}",
                    r["target_s"],
                    f"{r['target_s'] / r['seconds']:.1f}x",
                    verdict(r["passed"]),
                ]
            )
    print(table(["case", "measured", "target", "target / measured", "verdict"], rows))
    print(f"decision step p50 {results['step']['p50_ms']:.2f} ms over {args.steps} steps")
    payload = {
        "benchmark": "decisions",
        "when": utc_now(),
        "machine": machine(),
        "versions": versions("statsforecast", "mlforecast", "lightgbm", "arch", "numpy"),
        **results,
    }
    if not args.no_write:
        print(f"written to {write_result('decisions', payload)}")
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
