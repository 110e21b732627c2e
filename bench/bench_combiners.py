"""Which way of combining the forecasts should the ensemble use by default? Chosen on earlier
data, scored on later (nested walk-forward), never on the data it is judged on.

For each symbol, every default model forecasts from every origin of the bundled daily history
(``rolling_forecasts``, window 500, refit every 21 bars, as the forecast bench). The
candidates are online combiners, each fed only the losses known at each origin: Hedge over a
grid of ``eta`` and ``discount``, follow the leader (``leader``), equal weights, and stacking
(``stacked``: every 21 origins, the simplex weights whose combined normal had the lowest mean
CRPS over every outcome known so far, equal weights before 100 are known). The
origins are cut into ``--folds`` consecutive blocks; for each block after the first, the
candidate with the lowest mean CRPS over all origins before it is chosen and scored on the
block. Reported per horizon: the choice made in each fold, the out-of-sample CRPS of the
chosen candidates against today's default (Hedge, eta 0.5, discount 1) over the same
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

DEFAULT = "hedge eta=0.5 discount=1"
STACK_EVERY, STACK_MIN = 21, 100
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
    found["stacked"] = ("stacked", None)
    return found


def _mixture_crps(z: np.ndarray, mean: np.ndarray, sd: np.ndarray, y: np.ndarray) -> float:
    w = np.exp(z - z.max())
    w /= w.sum()
    mix_mean, mix_sd = combine(mean[:, :, None], sd[:, :, None], np.tile(w, (mean.shape[1], 1)))
    return float(crps_normal(y, mix_mean[:, 0], np.maximum(mix_sd[:, 0], 1e-12)).mean())


def stacked_weights(panel: Panel, h: int) -> np.ndarray:
    """Stacking, online: at every ``STACK_EVERY``-th origin, the weights (on the simplex, as a
    softmax) minimizing the mean CRPS of the combined normal over the outcomes known there
    (origins up to ``i - h``); equal weights until ``STACK_MIN`` outcomes are known."""
    from scipy.optimize import minimize

    step = h - 1
    actual, means, sds = panel.actual[:, step], panel.mean[:, :, step], panel.sd[:, :, step]
    usable = np.isfinite(actual) & np.isfinite(means).all(axis=0) & np.isfinite(sds).all(axis=0)
    n_models, n = means.shape
    z = np.zeros(n_models)
    out = np.zeros((n, n_models))
    for i in range(n):
        known = np.flatnonzero(usable[: max(i - h + 1, 0)])
        if i % STACK_EVERY == 0 and known.size >= STACK_MIN:
            fit = minimize(
                _mixture_crps,
                z,
                args=(means[:, known], sds[:, known], actual[known]),
                method="L-BFGS-B",
            )
            z = fit.x
        w = np.exp(z - z.max())
        available = np.isfinite(means[:, i])
        w = np.where(available, w, 0.0)
        out[i] = w / w.sum() if w.sum() > 0 else w
    return out


def losses(panel: Panel, h: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each candidate's CRPS at every origin of the sample (every model forecast, the outcome
    known), and the sample's origin positions."""
    step = h - 1
    actual = panel.actual[:, step]
    means, sds = panel.mean[:, :, step], panel.sd[:, :, step]
    sample = np.isfinite(actual) & np.isfinite(means).all(axis=0) & np.isfinite(sds).all(axis=0)
    out = {}
    for name, (kind, config) in candidates().items():
        if kind == "stacked":
            weights = stacked_weights(panel, h)
        else:
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
        "against_default": against_default(crps, h),
    }


def against_default(crps: dict[str, np.ndarray], h: int) -> dict[str, dict[str, float]]:
    """The other kinds of combiner against the default over the whole sample (each is online:
    no choice made on the sample), with a Diebold-Mariano test of the per-origin CRPS."""
    out = {}
    for name in ("leader", "equal", "stacked"):
        test = diebold_mariano(crps[name], crps[DEFAULT], horizon=h)
        out[name] = {
            "crps_bp": float(crps[name].mean() * 1e4),
            "default_crps_bp": float(crps[DEFAULT].mean() * 1e4),
            "dm": float(test.statistic),
            "p_value": float(test.p_value),
        }
    return out


def run_symbol(symbol: str, folds: int) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    market = load_market(BundledBarSource(), [symbol])
    series = Series(symbol, np.log(market.mark[:, 0]), market.times)
    began = time.perf_counter()
    panel = rolling_forecasts(series, DEFAULT_MODELS, RollingSpec(max(HORIZONS), 500, 21), None)
    forecast_s = time.perf_counter() - began
    results, by_horizon = [], {}
    for h in HORIZONS:
        crps, _ = losses(panel, h)
        by_horizon[h] = crps
        results.append(nested(crps, folds, h))
    return {"symbol": symbol, "forecast_s": round(forecast_s, 1), "horizons": results}, by_horizon


def pooled(series: dict[tuple[str, int], dict[str, np.ndarray]], folds: int) -> dict[str, Any]:
    """One default for every symbol and horizon, chosen as the nested walk-forward does: in
    each fold, the candidate with the lowest CRPS relative to today's default before the
    block, averaged over the series; then each series' out-of-sample CRPS in the block
    against the default's, with a Diebold-Mariano test per series."""
    names = list(next(iter(series.values())))
    choices: list[dict[str, Any]] = []
    scored: dict[tuple[str, int], tuple[list[np.ndarray], list[np.ndarray]]] = {
        key: ([], []) for key in series
    }
    for b in range(1, folds):

        def relative(name: str, b: int = b) -> float:
            ratios = []
            for crps in series.values():
                edge = np.linspace(0, len(crps[name]), folds + 1).astype(int)[b]
                ratios.append(crps[name][:edge].mean() / crps[DEFAULT][:edge].mean())
            return float(np.mean(ratios))

        pick = min(names, key=relative)
        choices.append({"fold": b, "chosen": pick, "relative_crps_before": relative(pick)})
        for key, crps in series.items():
            edges = np.linspace(0, len(crps[pick]), folds + 1).astype(int)
            block = slice(edges[b], edges[b + 1])
            scored[key][0].append(crps[pick][block])
            scored[key][1].append(crps[DEFAULT][block])
    out = []
    for (symbol, h), (ours, theirs) in scored.items():
        a, d = np.concatenate(ours), np.concatenate(theirs)
        test = diebold_mariano(a, d, horizon=h)
        out.append(
            {
                "symbol": symbol,
                "horizon": h,
                "chosen_crps_bp": float(a.mean() * 1e4),
                "default_crps_bp": float(d.mean() * 1e4),
                "dm_chosen_vs_default": float(test.statistic),
                "dm_p_value": float(test.p_value),
            }
        )
    return {"choices": choices, "series": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbol", action="append", help="default: SP500 and NASDAQ")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.folds < 2:
        raise SystemExit("--folds must be at least 2: one to choose on, one to score")
    symbols, losses_of = [], {}
    for symbol in args.symbol or ["SP500", "NASDAQ"]:
        found, by_horizon = run_symbol(symbol, args.folds)
        symbols.append(found)
        losses_of.update({(symbol, h): crps for h, crps in by_horizon.items()})
    together = pooled(losses_of, args.folds)
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
    print("\nEach kind against the default over the whole sample (CRPS, bp):")
    print(
        table(
            ["symbol", "h", "combiner", "bp", "default bp", "DM", "p"],
            [
                (
                    s["symbol"],
                    r["horizon"],
                    name,
                    f"{v['crps_bp']:.2f}",
                    f"{v['default_crps_bp']:.2f}",
                    f"{v['dm']:+.2f}",
                    f"{v['p_value']:.3f}",
                )
                for s in symbols
                for r in s["horizons"]
                for name, v in r["against_default"].items()
            ],
        )
    )
    print(
        "\nOne default for all, chosen per fold: "
        + ", ".join(c["chosen"] for c in together["choices"])
    )
    print(
        table(
            ["symbol", "h", "chosen bp", "default bp", "DM", "p"],
            [
                (
                    r["symbol"],
                    r["horizon"],
                    f"{r['chosen_crps_bp']:.2f}",
                    f"{r['default_crps_bp']:.2f}",
                    f"{r['dm_chosen_vs_default']:+.2f}",
                    f"{r['dm_p_value']:.3f}",
                )
                for r in together["series"]
            ],
        )
    )
    if not args.no_write:
        payload = {
            "date": utc_now(),
            "machine": machine(),
            "versions": versions("numpy", "statsforecast", "arch", "lightgbm"),
            "default": DEFAULT,
            "folds": args.folds,
            "symbols": symbols,
            "pooled": together,
        }
        print(f"wrote {write_result('combiners', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
