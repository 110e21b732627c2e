"""Studies: repeatable for a seed and batch size whatever the executor, pruned only with a
pruner, blind to the holdout, resumable after an interruption."""

from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from ffe.backtest.walkforward import WalkForwardSpec, run_walk_forward
from ffe.compute import LocalExecutor
from ffe.data import SyntheticMarket
from ffe.domain import ConfigError, MarketData
from ffe.tune.space import parse_space
from ffe.tune.storage import load_study
from ffe.tune.study import TuneSpec, run_study

SPACE = parse_space(["fast=2..10", "slow=12..40"])
SPEC = TuneSpec("sma_cross", SPACE, WalkForwardSpec(200, 100), trials=12, batch_size=4, seed=3)


@functools.cache
def _market() -> MarketData:
    return SyntheticMarket(1, 700, seed=11).to_market()


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'tune.db').as_posix()}"


def _trials(url: str, name: str) -> list[tuple[str, dict[str, Any], float | None]]:
    study = load_study(url, name)
    return [(t.state.name, t.params, t.value) for t in study.get_trials(deepcopy=False)]


def test_run_when_same_seed_and_batch_then_same_trials_in_process_and_on_a_pool(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)

    alone = run_study(_market(), SPEC, LocalExecutor(1), url, "alone")
    pooled = run_study(_market(), SPEC, LocalExecutor(2), url, "pooled")

    assert _trials(url, "alone") == _trials(url, "pooled")
    assert alone.best == pooled.best
    assert alone.best is not None
    assert len(_trials(url, "alone")) == 12


def test_run_when_best_then_its_value_is_its_walk_forward_over_the_tuning_bars(
    tmp_path: Path,
) -> None:
    outcome = run_study(_market(), SPEC, LocalExecutor(1), _url(tmp_path), "s")

    assert outcome.best is not None
    tuning = _market().select(0, 560)  # the last fifth is the holdout
    walked = run_walk_forward(tuning, "sma_cross", outcome.best.params, 200, 100, workers=1)
    assert outcome.best.value == pytest.approx(walked.backtest.stats.sharpe)
    assert outcome.holdout is not None
    assert outcome.holdout.bars == 140
    assert outcome.deflated is not None
    assert outcome.deflated.n_trials >= 1
    assert sum(outcome.counts.values()) == outcome.trials == 12


def test_run_when_pruner_then_some_trials_pruned_and_never_without(tmp_path: Path) -> None:
    url = _url(tmp_path)
    many = dataclasses.replace(SPEC, trials=24, pruner="median")

    pruned = run_study(_market(), many, LocalExecutor(1), url, "median")
    kept = run_study(
        _market(), dataclasses.replace(many, pruner="none"), LocalExecutor(1), url, "none"
    )

    assert pruned.counts["pruned"] > 0
    assert kept.counts["pruned"] == 0
    assert all(state != "PRUNED" for state, _, _ in _trials(url, "none"))


def _poisoned(market: MarketData, first: int) -> MarketData:
    """``market`` with absurd bars (a sawtooth 100 times the price) from bar ``first`` on."""
    arrays = {}
    for name in ("open", "high", "low", "close"):
        values = getattr(market, name).copy()
        values[first:] = values[first:] * 100 * (1 + (np.arange(len(values) - first) % 2))[:, None]
        arrays[name] = values
    arrays["high"] = np.fmax.reduce([arrays["open"], arrays["high"], arrays["close"]])
    arrays["low"] = np.fmin.reduce([arrays["open"], arrays["low"], arrays["close"]])
    return dataclasses.replace(market, **arrays)


def test_run_when_holdout_poisoned_then_no_trial_changes_and_only_the_holdout_does(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    clean = run_study(_market(), SPEC, LocalExecutor(1), url, "clean")

    poisoned = run_study(_poisoned(_market(), 560), SPEC, LocalExecutor(1), url, "poisoned")

    assert _trials(url, "clean") == _trials(url, "poisoned")
    assert clean.holdout is not None
    assert poisoned.holdout is not None
    assert clean.holdout.value != poisoned.holdout.value


class _PowerCutError(Exception):
    pass


class _Hooked:
    """A one-process executor whose session calls ``before()`` ahead of each item."""

    def __init__(self, before: Any) -> None:
        self.before, self.workers = before, 1

    def open(self, fn: Any, shared: Any) -> Any:
        before = self.before

        class Session:
            def submit(self, item: Any) -> Future[Any]:
                before()
                future: Future[Any] = Future()
                future.set_result(fn(shared, item))
                return future

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

        return Session()

    def map(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def _interrupting(items: int) -> _Hooked:
    """An executor whose session dies (a power cut) after ``items`` items."""
    left = [items]

    def count() -> None:
        left[0] -= 1
        if left[0] < 0:
            raise _PowerCutError

    return _Hooked(count)


def test_run_when_interrupted_mid_batch_then_resumed_with_those_trials_again(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    with pytest.raises(_PowerCutError):
        # The first batch's 4 segments, then 2 items into the second batch.
        run_study(_market(), SPEC, _interrupting(6), url, "cut")
    left = _trials(url, "cut")
    running = [params for state, params, _ in left if state == "RUNNING"]
    assert len(left) == 8
    assert len(running) == 4

    outcome = run_study(_market(), SPEC, LocalExecutor(1), url, "cut")

    assert (outcome.resumed, outcome.requeued, outcome.trials) == (4, 4, 12)
    after = _trials(url, "cut")
    assert [state for state, _, _ in after[4:8]] == ["FAIL"] * 4
    assert [params for _, params, _ in after[8:12]] == running
    assert all(state != "RUNNING" for state, _, _ in after)


def test_run_when_resumed_with_other_options_then_refused(tmp_path: Path) -> None:
    url = _url(tmp_path)
    run_study(_market(), dataclasses.replace(SPEC, trials=4), LocalExecutor(1), url, "s")

    with pytest.raises(ConfigError, match="metric"):
        run_study(
            _market(), dataclasses.replace(SPEC, metric="sortino"), LocalExecutor(1), url, "s"
        )


def test_run_when_grid_of_edge_values_then_warned_and_capped_at_the_grid(tmp_path: Path) -> None:
    spec = dataclasses.replace(
        SPEC, space=parse_space(["fast=3,5", "slow=20,30"]), sampler="grid", trials=50
    )

    outcome = run_study(_market(), spec, LocalExecutor(1), _url(tmp_path), "grid")

    assert outcome.trials == 4
    assert outcome.best is not None
    assert set(outcome.edges) == {"fast", "slow"}  # two values each: every one is an edge


def test_spec_when_unrankable_metric_or_unknown_sampler_then_refused() -> None:
    with pytest.raises(ConfigError, match="cannot rank"):
        dataclasses.replace(SPEC, metric="n_trades")
    with pytest.raises(ConfigError, match="sampler"):
        dataclasses.replace(SPEC, sampler="cmaes")  # type: ignore[arg-type]


def test_run_when_too_few_bars_after_the_holdout_then_config_error(tmp_path: Path) -> None:
    spec = dataclasses.replace(SPEC, holdout=0.7)

    with pytest.raises(ConfigError, match="walk-forward"):
        run_study(_market(), spec, LocalExecutor(1), _url(tmp_path), "short")
    assert optuna.get_all_study_names(_url(tmp_path)) == []


class _Intruding(_Hooked):
    """An executor whose session, at its first item, runs ``intrude`` (another run of the
    same study, as a second job naming it would) and keeps what it raised."""

    def __init__(self, intrude: Any) -> None:
        super().__init__(self._once)
        self.intrude, self.raised = intrude, None

    def _once(self) -> None:
        if self.intrude is not None:
            intrude, self.intrude = self.intrude, None
            try:
                intrude()
            except Exception as exc:  # kept for the test to look at
                self.raised = exc


def test_run_when_study_is_being_run_elsewhere_then_second_run_refused_and_first_unharmed(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    intruder = _Intruding(lambda: run_study(_market(), SPEC, LocalExecutor(1), url, "busy"))

    outcome = run_study(_market(), SPEC, intruder, url, "busy")

    assert isinstance(intruder.raised, ConfigError)
    assert "being run" in str(intruder.raised)
    assert (outcome.trials, outcome.requeued) == (12, 0)
    assert all(state != "FAIL" for state, _, _ in _trials(url, "busy"))
    assert len(_trials(url, "busy")) == 12


def test_run_when_resumed_on_more_bars_then_refused(tmp_path: Path) -> None:
    # A study of a symbol up to today, resumed after new bars arrived: its trials would be
    # scored on other windows than the earlier ones, and the old holdout's bars tuned on.
    url = _url(tmp_path)
    run_study(_market(), dataclasses.replace(SPEC, trials=4), LocalExecutor(1), url, "s")
    longer = SyntheticMarket(1, 760, seed=11).to_market()

    with pytest.raises(ConfigError, match="bars"):
        run_study(longer, SPEC, LocalExecutor(1), url, "s")
    assert len(_trials(url, "s")) == 4
