"""Which way of combining the forecasts should the ensemble use by default? Chosen on earlier
data, scored on later (nested walk-forward), never on the data it is judged on.

For each symbol, every default model forecasts from every origin of the bundled daily history
(``rolling_forecasts``, window 500, refit every 21 bars, as the forecast bench). The
candidates are online combiners, each fed only the losses known at each origin: Hedge over a
grid of ``eta`` and ``discount``, follow the leader (``leader``) and equal weights. The
origins are cut into ``--folds`` consecutive blocks; for each block after the first, the
candidate with the lowest mean CRPS over all origins before it is chosen and scored on the
block. Reported per horizon: the choice made in each fold, the out-of-sample CRPS of the
chosen candidates against today's default (Hedge, eta 2, discount 0.99) over the same
origins, with a Diebold-Mariano test of the per-origin CRPS, and each candidate's CRPS over
the whole sample for reference (a hindsight figure, not a choice).

    python -m bench.bench_combiners [--symbol SP500 --symbol NASDAQ] [--folds 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from bench.common import machine, table, utc_now, versions, write_result
from ffe.data import load_market
from ffe.data.bundled import BundledBarSource
from ffe.forecast.base import Series
from ffe.forecast.ensemble import HedgeConfig, combine, online_weights
from ffe.forecast.metrics import crps_normal, diebold_mariano
from ffe.forecast.models import DEFAULT_MODELS
from ffe.forecast.rolling import Panel, RollingSpec, rolling_forecasts

DEFAULT = "hedge eta=2 discount=0.99"
ETAS = (0.5, 1.0, 2.0, 4.0, 8.0)
DISCOUNTS = (0.9, 0.95, 0.99, 0.999, 1.0)
HORIZONS = (1, 5)


def candidates() -> dict[str, tuple[str, HedgeConfig | None]]:
    found: dict[str, tuple[str, HedgeConfig | None]] = {
        f"hedge eta={eta:g} discount={discount:g}": ("hedge", HedgeConfig(eta, discount))
        for eta in ETAS
        for discount in DISCOUNTS
    }
    found["leader"] = ("leader", None)
    found["equal"] = ("equal", None)
    return found


def losses(panel: Panel, h: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each candidate's CRPS at every origin of the sample (every model forecast, the outcome
    known), and the sample's origin positions."""
    step = h - 1
    actual = panel.actual[:, step]
    means, sds = panel.mean[:, :, step], panel.sd[:, :, step]
    sample = np.isfinite(actual) & np.isfinite(means).all(axis=0) & np.isfinite(sds).all(axis=0)
    out = {}
    for name, (kind, config) in candidates().items():
        weights = online_weights(panel, h, kind, config)
        mix_mean, mix_sd = combine(means[:, :, None], sds[:, :, None], weights)
        out[name] = crps_normal(actual[sample], mix_mean[sample, 0], mix_sd[sample, 0])
    return out, np.flatnonzero(sample)


def nested(crps: dict[str, np.ndarray], folds: int, h: int) -> dict[str, Any]:
    n = len(next(iter(crps.values())))
    edges = np.linspace(0, n, folds + 1).astype(int)
    chosen_loss, default_loss, choices = [], [], []
    for b in range(1, folds):
        before, block = slice(0, edges[b]), slice(edges[b], edges[b + 1])
        pick = min(crps, key=lambda name: float(crps[name][before].mean()))
        choices.append({"fold": b, "chosen_on": int(edges[b]), "chosen": pick})
        chosen_loss.append(crps[pick][block])
        default_loss.append(crps[DEFAULT][block])
    ours, theirs = np.concatenate(chosen_loss), np.concatenate(default_loss)
    test = diebold_mariano(ours, theirs, horizon=h)
    return {
        "horizon": h,
        "origins_scored": len(ours),
        "choices": choices,
        "chosen_crps_bp": float(ours.mean() * 1e4),
        "default_crps_bp": float(theirs.mean() * 1e4),
        "dm_chosen_vs_default": float(test.statistic),
        "dm_p_value": float(test.p_value),
        "whole_sample_crps_bp": {
            name: float(values.mean() * 1e4) for name, values in sorted(crps.items())
        },
    }


def run_symbol(symbol: str, folds: int) -> dict[str, Any]:
    market = load_market(BundledBarSource(), [symbol])
    series = Series(symbol, np.log(market.mark[:, 0]), market.times)
    began = time.perf_counter()
    panel = rolling_forecasts(series, DEFAULT_MODELS, RollingSpec(max(HORIZONS), 500, 21), None)
    forecast_s = time.perf_counter() - began
    results = []
    for h in HORIZONS:
        crps, _ = losses(panel, h)
        results.append(nested(crps, folds, h))
    return {"symbol": symbol, "forecast_s": round(forecast_s, 1), "horizons": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbol", action="append", help="default: SP500 and NASDAQ")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.folds < 2:
        raise SystemExit("--folds must be at least 2: one to choose on, one to score")
    symbols = [run_symbol(symbol, args.folds) for symbol in args.symbol or ["SP500", "NASDAQ"]]
    rows = [
        (
            s["symbol"],
            r["horizon"],
            ", ".join(c["chosen"] for c in r["choices"]),
            f"{r['chosen_crps_bp']:.2f}",
            f"{r['default_crps_bp']:.2f}",
            f"{r['dm_chosen_vs_default']:+.2f}",
            f"{r['dm_p_value']:.3f}",
        )
        for s in symbols
        for r in s["horizons"]
    ]
    headers = ["symbol", "h", "chosen per fold", "chosen bp", "default bp", "DM", "p"]
    print(table(headers, rows))
    if not args.no_write:
        payload = {
            "date": utc_now(),
            "machine": machine(),
            "versions": versions("numpy", "statsforecast", "arch", "lightgbm"),
            "default": DEFAULT,
            "folds": args.folds,
            "symbols": symbols,
        }
        print(f"wrote {write_result('combiners', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
