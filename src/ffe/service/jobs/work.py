"""What each kind of job does: the work that runs in a job's process (see ``process``).

A job process imports this module and whatever its work needs, not the worker's services.
``WORK`` maps each kind to its work; tests put stand-ins there.

A job may run more than once: when its worker dies mid-job it is queued again (see ``queue``).
Work that records something must record it once: a backtest's run takes the job's id, and a
run already recorded under it is not recorded again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ffe.bootstrap import Components
    from ffe.domain.orders import Decision


@dataclass(frozen=True, slots=True)
class Progress:
    """What a job's work calls with the fraction done, and which job it is doing. A job is
    stopped by ending its process group (``process``), so its work needs no stop flag."""

    job_id: str
    report: Callable[[float], None]

    def __call__(self, fraction: float) -> None:
        self.report(fraction)


Work = Callable[["Components", dict[str, Any], Progress], tuple[dict[str, Any], str | None]]


def in_job_process(
    work: Work,
    components: Components,
    job_id: str,
    payload: dict[str, Any],
    report: Callable[[float], None],
) -> tuple[dict[str, Any], str | None]:
    """Run job ``job_id``'s ``work`` in a job process, reporting its progress to ``report``.
    ``components`` came pickled from the worker: the job's process reads no settings."""
    return work(components, payload, Progress(job_id, report))


def _backtest(
    components: Components, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    from ffe.decide.strategy import refuse_settings_only
    from ffe.service import backtests
    from ffe.service.markets import MarketSpec

    params = payload.get("params") or {}
    refuse_settings_only(payload["strategy"], params)  # a job queued before they were refused
    request = backtests.BacktestRequest(
        payload["strategy"],
        params,
        MarketSpec(tuple(payload["symbols"]), payload.get("start"), payload.get("end")),
        backtests.Costs(
            cash=payload.get("cash"),
            commission=payload.get("commission"),
            slippage_bps=payload.get("slippage_bps"),
        ),
        run_id=progress.job_id,  # a job redone records its run once, under its id
        extra_config={"source": "api"},
    )
    # 0.1 once the bars are loaded, 0.8 once the run is done: recording is the rest
    outcome = backtests.run(components, request, _between(progress, 0.1, 0.8))
    if outcome.unrecorded is not None:
        raise outcome.unrecorded
    result = outcome.result
    answer = {"stats": result.run_stats(), "trades": len(result.trades)}
    if result.warnings:  # too good to be true: the job's answer says so, as its record does
        answer["warnings"] = list(result.warnings)
    reasons = llm_failure_reasons(result.decisions)
    if reasons:  # the worker adds them to ffe_llm_failures_total, as the agent does its own
        answer["llm_failure_reasons"] = reasons
    return {**answer, "bars": result.market.n_bars}, outcome.run_id


def llm_failure_reasons(decisions: Sequence[Decision]) -> dict[str, int]:
    """How many of ``decisions`` the LLM voter failed to vote on, by reason."""
    found: dict[str, int] = {}
    for decision in decisions:
        failure = decision.details.get("llm_failure")
        if isinstance(failure, dict):
            reason = str(failure.get("reason", "error"))
            found[reason] = found.get(reason, 0) + 1
    return found


def _between(progress: Progress, low: float, high: float) -> Callable[[int, int], None]:
    """A use case's (done, total) as the job's fraction, from ``low`` to ``high``."""

    def report(done: int, total: int) -> None:
        progress(round(low + (high - low) * done / max(1, total), 6))

    return report


def _sweep(
    components: Components, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    from ffe.decide.strategy import refuse_settings_only
    from ffe.service import backtests
    from ffe.service.markets import MarketSpec

    refuse_settings_only(payload["strategy"], payload["grid"])  # queued before they were refused
    points = math.prod(len(values) for values in payload["grid"].values())
    request = backtests.SweepRequest(
        payload["strategy"],
        payload["grid"],
        # A job queued by an older version may name an unrankable metric: refused before any
        # backtest runs.
        payload.get("metric", "sharpe"),
        MarketSpec((payload["symbol"],), payload.get("start"), payload.get("end")),
        workers=1 if points < 16 else None,
    )
    outcome = backtests.sweep(components, request, _between(progress, 0.0, 1.0))
    metric = outcome.metric
    found: list[dict[str, Any]] = [
        {"params": r.params, "value": _number(r.stats.get(metric)), "stats": r.stats}
        for r in outcome.ranked
    ]
    return {
        "metric": metric,
        "direction": outcome.direction,  # which way "best" and the ranking go
        "params": list(outcome.names),
        "rows": found,
        "best": found[0] if found else None,
        "errors": [{"params": r.params, "error": r.error} for r in outcome.failed],
        **outcome.source,  # a strategy file's path, class and SHA-256
    }, None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _forecast_bench(
    components: Components, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    from ffe.service.forecasts import BenchRequest, bench

    request = BenchRequest(
        payload["symbol"],
        tuple(payload.get("horizons") or [1]),
        payload.get("models"),
        int(payload.get("window", 500)),
        int(payload.get("refit_every", 21)),
        payload.get("start"),
        payload.get("end"),
        workers=1,
    )
    result = bench(components, request, _between(progress, 0.0, 0.95))
    return result.to_dict(), None


def _tune(
    components: Components, payload: dict[str, Any], progress: Progress
) -> tuple[dict[str, Any], str | None]:
    from ffe.backtest.walkforward import WalkForwardSpec
    from ffe.service import tuning
    from ffe.service.markets import MarketSpec

    request = tuning.TuneRequest(
        payload["strategy"],
        tuple(f"{name}={text}" for name, text in payload["params"].items()),
        payload.get("metric", "sharpe"),
        MarketSpec((payload["symbol"],), payload.get("start"), payload.get("end")),
        walk_forward=WalkForwardSpec.parse(payload.get("walk_forward", "train=750,test=250")),
        trials=int(payload["trials"]),
        sampler=payload.get("sampler", "tpe"),
        pruner=payload.get("pruner", "median"),
        seed=int(payload.get("seed", 0)),
        holdout=float(payload.get("holdout", 0.2)),
        # Named after the job when the caller named none: a job run again after its worker
        # died resumes its own study instead of starting another.
        study=payload.get("study") or f"job-{progress.job_id}",
    )
    outcome = tuning.run(components, request, _between(progress, 0.0, 0.95))
    return outcome.to_dict(), None


WORK: dict[str, Work] = {
    "backtest": _backtest,
    "sweep": _sweep,
    "forecast_bench": _forecast_bench,
    "tune": _tune,
}
KINDS = tuple(WORK)
