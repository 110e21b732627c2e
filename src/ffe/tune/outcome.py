"""What a study found: the best trial with its out-of-sample value, the same parameters on the
holdout, the deflated Sharpe ratio of picking the best of many, and an edge warning."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ffe.backtest.walkforward import WalkForwardResult, run_walk_forward
from ffe.domain.market import MarketData
from ffe.tune.dsr import DeflatedSharpe, deflated_sharpe_of
from ffe.tune.scoring import HoldoutScore, TrialSetup, bar_returns, score_holdout, yearly_periods
from ffe.tune.space import edges
from ffe.tune.storage import RESULT_ATTR, finished_trials

if TYPE_CHECKING:
    import optuna

    from ffe.tune.study import TuneSpec


@dataclass(frozen=True, slots=True)
class BestTrial:
    """The best trial: its number, parameters and value over the out-of-sample bars."""

    number: int
    params: dict[str, Any]
    value: float


@dataclass(frozen=True, slots=True)
class TuneOutcome:
    """A study after a run: its trials by state, the best, the holdout and the caveats."""

    study: str
    metric: str
    direction: str
    trials: int  # finished, towards the study's total
    counts: dict[str, int]  # complete, pruned, fail
    resumed: int  # finished trials found when this run started
    requeued: int  # interrupted trials run again
    best: BestTrial | None
    holdout: HoldoutScore | None
    deflated: DeflatedSharpe | None
    edges: tuple[str, ...]  # the best's parameters on the edge of their range
    walked: WalkForwardResult | None  # the best's walk-forward over the tuning bars
    source: dict[str, Any] = field(default_factory=dict)  # a file strategy's strategy_file

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the walk-forward as its segments)."""
        best = self.best
        return {
            "study": self.study,
            "metric": self.metric,
            "direction": self.direction,
            "trials": self.trials,
            "counts": self.counts,
            "resumed": self.resumed,
            "requeued": self.requeued,
            "best": None
            if best is None
            else {"number": best.number, "params": best.params, "value": _finite(best.value)},
            "holdout": None if self.holdout is None else self.holdout.to_dict(),
            "deflated_sharpe": None if self.deflated is None else self.deflated.to_dict(),
            "edges": list(self.edges),
            "walk_forward": None if self.walked is None else self.walked.to_dict(),
            **self.source,
        }


def summarise(
    study: optuna.Study,
    spec: TuneSpec,
    setup: TrialSetup,
    market: MarketData,
    kept: int,
    *,
    before: int,
    requeued: int,
) -> TuneOutcome:
    """The outcome of ``study`` (stored with it, for ``ffe tune show`` and the dashboard)."""
    counts = _counts(study)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best, holdout, deflated, walked = None, None, None, None
    if complete:
        chosen = study.best_trial
        best = BestTrial(chosen.number, dict(chosen.params), float(chosen.value or math.nan))
        walked = _walk(setup, best.params)
        if kept:
            holdout = score_holdout(market, market.n_bars - kept, setup, best.params)
        deflated = _deflated(complete, counts, walked)
    outcome = TuneOutcome(
        study.study_name, spec.metric, study.direction.name.lower(), finished_trials(study),
        counts, before, requeued, best, holdout, deflated,
        tuple(edges(spec.space, best.params)) if best else (), walked,
        {k: v for k, v in spec.context.items() if k == "strategy_file"},
    )  # fmt: skip
    study.set_user_attr(RESULT_ATTR, outcome.to_dict())
    return outcome


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "fail": 0}
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        if state in counts:
            counts[state] += 1
    return counts


def _walk(setup: TrialSetup, params: dict[str, Any]) -> WalkForwardResult:
    """The best parameters walked forward over the tuning bars, in this process: the same
    joined run the trial was scored on, for its segments and its returns."""
    spec_test = setup.windows[0][1] - setup.windows[0][0]
    return run_walk_forward(
        setup.market, setup.strategy, setup.params(params), setup.train, spec_test,
        setup.config, setup.risk, workers=1,
    )  # fmt: skip


def _deflated(
    complete: list[optuna.trial.FrozenTrial], counts: dict[str, int], walked: WalkForwardResult
) -> DeflatedSharpe:
    """Deflated over every trial tested (pruned ones too), with the variance of the Sharpe
    ratios of those that ran to the end, per bar."""
    periods = yearly_periods(walked.backtest)
    scale = math.sqrt(periods) if periods > 0 else 1.0
    sharpes = [float(t.user_attrs["sharpe"]) / scale for t in complete if "sharpe" in t.user_attrs]
    tested = counts["complete"] + counts["pruned"]
    return deflated_sharpe_of(sharpes, tested, bar_returns(walked.backtest), periods)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
