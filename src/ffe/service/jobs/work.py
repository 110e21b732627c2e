"""What each kind of job does: the work that runs in a job's process (see ``process``).

A job process imports this module and whatever its work needs, not the worker's services.
``WORK`` maps each kind to its work; tests put stand-ins there.

A job may run more than once: when its worker dies mid-job it is queued again (see ``queue``).
Work that records something must record it once: a backtest's run takes the job's id, and a
run already recorded under it is not recorded again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ffe.config import Settings


@dataclass(frozen=True, slots=True)
class Progress:
    """What a job's work calls with the fraction done, and which job it is doing. A job is
    stopped by ending its process group (``process``), so its work needs no stop flag."""

    job_id: str
    report: Callable[[float], None]

    def __call__(self, fraction: float) -> None:
        self.report(fraction)


Work = Callable[[Settings, dict[str, Any], Progress], tuple[dict[str, Any], str | None]]


def in_job_process(
    work: Work,
    settings: Settings,
    job_id: str,
    payload: dict[str, Any],
    report: Callable[[float], None],
) -> tuple[dict[str, Any], str | None]:
    """Run job ``job_id``'s ``work`` in a job process, reporting its progress to ``report``."""
    return work(settings, payload, Progress(job_id, report))


def _backtest(
    settings: Settings, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    from ffe import bootstrap
    from ffe.backtest.engine import run_backtest
    from ffe.data import load_market
    from ffe.decide.strategy import refuse_settings_only

    params = payload.get("params") or {}
    refuse_settings_only(payload["strategy"], params)  # a job queued before they were refused
    market = load_market(
        bootstrap.data_catalog(settings),
        payload["symbols"],
        start=payload.get("start"),
        end=payload.get("end"),
    )
    strategy = bootstrap.strategy(settings, payload["strategy"], params)
    config = bootstrap.backtest_config(
        settings, cash=payload.get("cash"), commission=payload.get("commission")
    )
    progress(0.1)
    result = run_backtest(market, strategy, config, risk=bootstrap.risk_engine(settings))
    progress(0.8)
    run_id = asyncio.run(_record(settings, result, progress.job_id))
    stats = result.stats.as_dict()
    return {"stats": stats, "trades": len(result.trades), "bars": market.n_bars}, run_id


async def _record(settings: Settings, result: Any, run_id: str) -> str:
    """Record the run under ``run_id`` (the job's id), unless an earlier try of the same job
    already did."""
    from ffe import bootstrap
    from ffe.runs.journal import record_backtest

    db = await bootstrap.open_journal(settings)
    try:
        return await record_backtest(db, result, extra_config={"source": "api"}, run_id=run_id)
    finally:
        await db.dispose()


def _sweep(
    settings: Settings, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    from ffe import bootstrap
    from ffe.backtest.objective import direction_of, rank_key
    from ffe.backtest.sweep import combinations, run_sweep
    from ffe.data import load_market
    from ffe.decide.strategy import refuse_settings_only

    refuse_settings_only(payload["strategy"], payload["grid"])  # queued before they were refused
    metric = payload.get("metric", "sharpe")
    # Before any backtest runs: a job queued by an older version may name an unrankable metric.
    direction = direction_of(metric)
    market = load_market(
        bootstrap.data_catalog(settings),
        [payload["symbol"]],
        start=payload.get("start"),
        end=payload.get("end"),
    )
    grid = combinations(payload["grid"])
    done = [0]

    def advance(_: Any) -> None:
        done[0] += 1
        progress(done[0] / len(grid))

    rows = run_sweep(
        market,
        payload["strategy"],
        grid,
        bootstrap.backtest_config(settings),
        bootstrap.risk_engine(settings),
        executor=bootstrap.executor(settings, 1 if len(grid) < 16 else None),
        on_done=advance,
    )
    found: list[dict[str, Any]] = [
        {"params": r.params, "value": _number(r.stats.get(metric)), "stats": r.stats}
        for r in rows
        if r.error is None
    ]
    ranked = sorted(found, key=lambda r: rank_key(r["stats"].get(metric), direction))
    errors = [{"params": r.params, "error": r.error} for r in rows if r.error]
    best = ranked[0] if ranked else None
    return {
        "metric": metric,
        "direction": direction,  # which way "best" and the ranking go: maximize or minimize
        "params": list(payload["grid"]),
        "rows": found,
        "best": best,
        "errors": errors,
    }, None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _forecast_bench(
    settings: Settings, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    import numpy as np

    from ffe import bootstrap
    from ffe.data import load_market
    from ffe.forecast.base import Series
    from ffe.forecast.evaluate import evaluate
    from ffe.forecast.models import BASELINE, parse_models
    from ffe.forecast.rolling import RollingSpec, rolling_forecasts

    names = parse_models(payload.get("models"))
    names = names if BASELINE in names else (BASELINE, *names)
    symbol, horizons = payload["symbol"], sorted(set(payload.get("horizons") or [1]))
    market = load_market(
        bootstrap.data_catalog(settings),
        [symbol],
        start=payload.get("start"),
        end=payload.get("end"),
    )
    series = Series(symbol, np.log(market.mark[:, 0]), market.times)
    window, refit = int(payload.get("window", 500)), int(payload.get("refit_every", 21))
    spec = RollingSpec(horizon=max(horizons), window=window, refit_every=refit)
    total = max(1, len(spec.origins(len(series))) * len(names))
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        progress(0.95 * done[0] / total)

    panel = rolling_forecasts(series, names, spec, workers=1, progress=advance)
    result = evaluate(panel, series.values, horizons, window, refit)
    return result.to_dict(), None


WORK: dict[str, Work] = {
    "backtest": _backtest,
    "sweep": _sweep,
    "forecast_bench": _forecast_bench,
}
KINDS = tuple(WORK)
