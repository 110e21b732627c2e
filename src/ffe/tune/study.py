"""A study: Optuna searching a strategy's parameters, trials scored on the walk-forward's
out-of-sample segments, pruned between segments, the best scored once more on a holdout.

The process calling ``run_study`` drives the study and alone writes its storage. It asks
Optuna for a batch of ``batch_size`` trials, then scores them segment by segment: round j
submits (trial, segment j) for every trial still running to the executor, reports each
trial's value so far in trial order, and asks the pruner about each in the same order; after
the last round (or when pruned) each trial is told. Nothing in that sequence depends on which
worker finished first, so the same seed and batch size give the same trials and the same best
on one process, a pool or a cluster.

A study interrupted mid-batch (a crash, Ctrl-C, a cancelled job) leaves its running trials in
the storage as RUNNING; run it again under the same name and they are marked failed, their
parameters queued to run first, and the study goes on until it has ``trials`` finished trials.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from ffe.backtest.engine import BacktestConfig
from ffe.backtest.objective import direction_of
from ffe.backtest.walkforward import WalkForwardSpec
from ffe.compute import Executor, Session
from ffe.decide.strategy import make_strategy
from ffe.domain.errors import ConfigError, FfeError
from ffe.domain.market import MarketData
from ffe.risk.engine import RiskEngine
from ffe.tune.outcome import TuneOutcome, summarise
from ffe.tune.scoring import (
    SegmentItem,
    SegmentScore,
    TrialSetup,
    holdout_bars,
    score_segments,
)
from ffe.tune.space import Dimension, grid_size
from ffe.tune.storage import StudyRecord, finished_trials

log = logging.getLogger(__name__)

Sampler = Literal["tpe", "random", "grid"]
Pruner = Literal["none", "median", "asha"]
SAMPLERS: tuple[Sampler, ...] = ("tpe", "random", "grid")
PRUNERS: tuple[Pruner, ...] = ("none", "median", "asha")


@dataclass(frozen=True, slots=True)
class TuneSpec:
    """What to search and how. ``holdout``: a fraction of the bars (below 1) or a number of
    bars kept back from every trial; ``trials``: finished trials the study ends with."""

    strategy: str
    space: tuple[Dimension, ...]
    walk_forward: WalkForwardSpec
    metric: str = "sharpe"
    trials: int = 100
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    seed: int = 0
    batch_size: int = 8
    holdout: float = 0.2
    context: Mapping[str, Any] = field(default_factory=dict)  # the market, costs: the caller's
    # Parameters every trial gets and no study stores (not in ``setup()``): the server's
    # settings, such as the LLM voter's (its key among them). A trial's own win.
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; one of: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; one of: {', '.join(PRUNERS)}")
        if self.trials < 1 or self.batch_size < 1:
            raise ConfigError("trials and the batch size must be at least 1")
        direction_of(self.metric)  # an unrankable metric is refused before anything runs

    def setup(self) -> dict[str, Any]:
        """JSON-ready: what a study is made with, stored with it and checked on a resume (the
        number of trials may change between runs)."""
        return {
            "strategy": self.strategy,
            "space": [dimension.to_dict() for dimension in self.space],
            "walk_forward": str(self.walk_forward),
            "metric": self.metric,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "holdout": self.holdout,
            **{key: value for key, value in self.context.items()},
        }


def run_study(
    market: MarketData,
    spec: TuneSpec,
    executor: Executor,
    storage: str,
    name: str,
    *,
    config: BacktestConfig | None = None,
    risk: RiskEngine | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TuneOutcome:
    """Run (or resume) study ``name`` in ``storage`` (an SQLAlchemy URL) on ``market``; see
    the module docstring. ``progress(done, total)`` counts finished trials."""
    config = config or BacktestConfig()
    target = spec.trials if spec.sampler != "grid" else min(spec.trials, grid_size(spec.space))
    kept = holdout_bars(market.n_bars, spec.holdout)
    tuning = market.select(0, market.n_bars - kept)
    windows = tuple(spec.walk_forward.windows(tuning.n_bars))  # too few bars fail here
    setup = TrialSetup(
        tuning, spec.strategy, spec.walk_forward.train, windows, config, risk, spec.metric,
        dict(spec.fixed),
    )  # fmt: skip
    record = StudyRecord(storage, name, direction_of(spec.metric))
    # Closed when done: Optuna never disposes its engine, whose connections would stay
    # open in a worker that runs one tune job after another.
    try:
        study, requeued = _resume(record, spec, market)
        before = finished_trials(record.study)
        report = progress or _silent
        done = before
        report(done, target)
        with executor.open(score_segments, setup) as session:
            while done < target:
                batch = [study.ask() for _ in range(min(spec.batch_size, target - done))]
                running = [_start(study, trial, spec) for trial in batch]
                for trial in batch:
                    record.started(_frozen(study, trial))
                scoring = _Scoring(session, executor.workers, len(windows))
                _run_batch(study, [r for r in running if r is not None], scoring)
                for trial in batch:
                    record.ended(_frozen(study, trial))
                done += len(batch)
                report(done, target)
        return summarise(record.study, spec, setup, market, kept, before=before, requeued=requeued)
    finally:
        record.close()


def _frozen(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return study.get_trials(deepcopy=False)[trial.number]


def _resume(record: StudyRecord, spec: TuneSpec, market: MarketData) -> tuple[optuna.Study, int]:
    """The study to sample and prune on, in memory, holding every trial the storage has.
    Trials an interrupted run left running are failed there, and their parameters queued
    to run first. Returns it and how many were queued again."""
    # The bars themselves, not only how they were asked for: a market asked up to today
    # grows, and on more bars the windows and the holdout move under the earlier trials.
    bars = [market.n_bars, str(market.times[0]), str(market.times[-1])]
    record.check_setup({**spec.setup(), "bars": bars})
    interrupted = record.fail_interrupted()
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        sampler=_sampler(spec),
        pruner=_pruner(spec),
        direction=direction_of(spec.metric),
    )
    study.add_trials(record.study.get_trials(deepcopy=False))
    for params in interrupted:
        study.enqueue_trial(params, skip_if_exists=False)
    if interrupted:
        log.warning(
            "study %s: %d interrupted trials failed, their parameters queued again",
            record.study.study_name,
            len(interrupted),
        )
    return study, len(interrupted)


def _sampler(spec: TuneSpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "grid":
        grid = {dimension.name: dimension.values() for dimension in spec.space}
        return _GridSampler(grid, seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its stop once the grid is done: that stops an
    ``optimize`` loop and raises under ask and tell. A study here ends at the grid's size."""

    def after_trial(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: ``run_study`` asks for no more trials than the grid has."""


def _pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if spec.pruner == "asha":
        # Rungs after 1, 3 and 9 segments, a third going on from each.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass(slots=True)
class _Running:
    """A trial of the batch still being scored: its parameters and segments so far."""

    trial: optuna.Trial
    params: dict[str, Any]
    parts: tuple[Any, ...] = ()
    last: SegmentScore | None = None


@dataclass(frozen=True, slots=True)
class _Scoring:
    """Where a batch's segments are scored: ``session``'s ``workers`` workers."""

    session: Session[TrialSetup, list[SegmentScore]]
    workers: int
    segments: int

    def round(self, running: list[_Running]) -> list[SegmentScore]:
        """Each running trial's next segment, the trials cut into one item per worker (an
        item per trial costs more in round trips than a segment takes to score)."""
        items = [SegmentItem(r.trial.number, r.params, r.parts) for r in running]
        size = max(1, math.ceil(len(items) / max(1, self.workers)))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        futures = [self.session.submit(chunk) for chunk in chunks]
        # Read back in the trials' order, whichever worker finished first.
        return [score for future in futures for score in future.result()]


def _run_batch(study: optuna.Study, running: list[_Running], scoring: _Scoring) -> None:
    """Score the batch's trials segment by segment, pruning between segments."""
    for step in range(1, scoring.segments + 1):
        scores = scoring.round(running)
        running = _report(study, running, scores, step, last=step == scoring.segments)
    for left in running:
        _finish(study, left)


def _start(study: optuna.Study, trial: optuna.Trial, spec: TuneSpec) -> _Running | None:
    """The trial's parameters; a trial whose parameters the strategy refuses fails here."""
    from optuna.trial import TrialState

    params = {dimension.name: dimension.suggest(trial) for dimension in spec.space}
    try:
        make_strategy(spec.strategy, params)
    except FfeError as exc:
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        return None
    return _Running(trial, params)


def _report(
    study: optuna.Study,
    running: list[_Running],
    scores: list[SegmentScore],
    step: int,
    *,
    last: bool,
) -> list[_Running]:
    """Report each trial's value after segment ``step`` and prune, both in trial order.

    A value that is not a number (no trade yet, a flat curve) is not reported: the trial is
    neither pruned for it nor compared with it."""
    from optuna.trial import TrialState

    going = []
    for entry, score in zip(running, scores, strict=True):
        if score.error is not None or score.part is None:
            entry.trial.set_user_attr("error", score.error)
            study.tell(entry.trial, state=TrialState.FAIL)
            continue
        entry.parts, entry.last = (*entry.parts, score.part), score
        if math.isfinite(score.value):
            entry.trial.report(score.value, step=step)
        going.append(entry)
    if last:
        return going
    kept = []
    for entry in going:
        if (
            math.isfinite(entry.last.value if entry.last else math.nan)
            and entry.trial.should_prune()
        ):
            entry.trial.set_user_attr("pruned_after_segments", step)
            study.tell(entry.trial, state=TrialState.PRUNED)
        else:
            kept.append(entry)
    return kept


def _finish(study: optuna.Study, entry: _Running) -> None:
    """Tell a trial scored on every segment its value (failed when it has none)."""
    from optuna.trial import TrialState

    score = entry.last
    value = math.nan if score is None else score.value
    if score is not None and math.isfinite(score.sharpe):
        entry.trial.set_user_attr("sharpe", score.sharpe)
    if math.isnan(value):
        entry.trial.set_user_attr("error", "the metric has no value over the out-of-sample bars")
        study.tell(entry.trial, state=TrialState.FAIL)
        return
    study.tell(entry.trial, value)


def _silent(done: int, total: int) -> None:
    """Progress nobody asked for."""
