"""One decision step at a time: the strategy's instruction for the newest bar.

A plain strategy is asked for targets over the history up to the newest bar and its last row
is the instruction: exactly what the backtest's stream mode does, which is checked to equal
batch mode for every built-in. The ensemble strategy would refit every model on every bar
that way, so it steps through ``EnsembleDecider`` instead: refit every ``refit_every`` bars,
forecast at every bar, decide every ``every`` bars, weights learned from each bar's outcome
as it arrives and the confidence recalibrated: the backtest's numbers, bar for bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ffe.decide.strategy import Strategy
from ffe.domain.market import FloatArray, History, utc_datetime
from ffe.domain.orders import Decision

if TYPE_CHECKING:
    from ffe.decide.ensemble import EnsembleDecider
    from ffe.forecast.base import Series


class Stepper(Protocol):
    """Targets (one per symbol, NaN for no instruction) and decisions for the newest bar.

    A stepper with state of its own that the history does not hold (what a model learnt from
    its forecasts' outcomes) also has ``state() -> dict`` and ``restore(dict)``: the agent
    keeps that in its checkpoint, so a resumed agent decides as it would have undisturbed."""

    def step(self, history: History) -> tuple[FloatArray, list[Decision]]: ...


class StrategyStepper:
    """Any strategy, asked about the whole history seen so far; with ``window``, a strategy
    that says how many bars its newest target depends on (``memory()``, like sma_cross) is
    asked about only the last ``max(window, 3 * memory())`` bars, so a live agent's step
    costs the same on its millionth bar as on its first. Strategies that do not say (their
    targets may count bars from the first, as momentum's rebalancing does) keep the whole
    history."""

    def __init__(self, strategy: Strategy, window: int | None = None) -> None:
        self.strategy = strategy
        memory = getattr(strategy, "memory", None)
        self.window = None if window is None or memory is None else max(window, 3 * memory())

    def step(self, history: History) -> tuple[FloatArray, list[Decision]]:
        if self.window is not None and len(history) > self.window:
            history = history.tail(self.window)
        rows = np.asarray(self.strategy.targets(history), dtype=np.float64)
        row = rows[-1]
        nanos = int(history.times[-1].astype("datetime64[ns]").astype(np.int64))
        time = utc_datetime(nanos)
        decisions = [
            Decision(time, symbol, float(row[j]), rationale=self._rationale(history, j, row[j]))
            for j, symbol in enumerate(history.symbols)
            if not math.isnan(row[j])
        ]
        return row, decisions

    def _rationale(self, history: History, column: int, target: float) -> str:
        """The strategy's own words for a decision (``rationale_for``, as sma_cross says
        which averages crossed), or what it asked for and that it gives no reasons."""
        said = getattr(self.strategy, "rationale_for", None)
        if said is not None:
            return str(said(history, column, float(target)))
        return (
            f"{self.strategy.name}: hold {float(target):+.2f} of equity "
            "(this strategy states targets only, no reasons)"
        )


class EnsembleStepper:
    """The ensemble strategy through its live decider, one decider per symbol.

    ``on_forecast``, when set, is told each model's name and the seconds its forecast took
    (``EnsembleDecider.on_forecast``), in every decider."""

    def __init__(self, strategy: Strategy) -> None:
        from ffe.decide.ensemble import EnsembleStrategy

        if not isinstance(strategy, EnsembleStrategy):
            raise TypeError("EnsembleStepper needs the ensemble strategy")
        self.strategy = strategy
        voter = strategy.llm()
        extra = [voter] if voter is not None else []
        self._extra = extra
        self._deciders: dict[int, EnsembleDecider] = {}
        self._symbols: dict[int, str] = {}
        self._saved: dict[str, Mapping[str, Any]] = {}  # restored, for deciders not yet made
        self._on_forecast: Callable[[str, float], None] | None = None

    def state(self) -> dict[str, Any]:
        """Each symbol's decider's state (``EnsembleDecider.state``), as JSON."""
        return {self._symbols[j]: d.state() for j, d in self._deciders.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back a ``state()``: each symbol's decider is rebuilt from it on its next step,
        refitted on the bars its models were last fitted on."""
        self._deciders.clear()
        self._saved = dict(state)

    @property
    def on_forecast(self) -> Callable[[str, float], None] | None:
        return self._on_forecast

    @on_forecast.setter
    def on_forecast(self, hook: Callable[[str, float], None] | None) -> None:
        self._on_forecast = hook
        for decider in self._deciders.values():
            decider.on_forecast = hook

    def step(self, history: History) -> tuple[FloatArray, list[Decision]]:
        from ffe.forecast.base import Series

        s = self.strategy
        row = np.full(len(history.symbols), np.nan)
        decisions = []
        for j, symbol in enumerate(history.symbols):
            column = history.mark[:, j]
            known = np.flatnonzero(np.isfinite(column) & (column > 0))
            if known.size == 0:
                continue
            first = int(known[0])
            origin = len(column) - 1 - (first + s.window - 1)  # as RollingSpec counts them
            if origin < 0:
                continue
            decider = self._deciders.get(j)
            series = Series(symbol, np.log(column[first:]), history.times[first:])
            if decider is None:
                decider = self._deciders[j] = self._new_decider()
                self._symbols[j] = symbol
                self._resume(decider, series, origin)
            elif origin % s.refit_every == 0:
                decider.refit(series)
            if origin % s.every != 0:
                decider.observe(series)  # the weights learn from every bar, as in a backtest
                continue
            decision = decider.decide(series)
            if decision is None:  # no model could forecast: no instruction, as in a backtest
                continue
            row[j] = decision.target
            decisions.append(decision)
        return row, decisions

    def _resume(self, decider: EnsembleDecider, series: Series, origin: int) -> None:
        """A new decider at ``origin``: fitted as an undisturbed one would be there. With a
        saved state, each model on the bars its saved fit saw, with the weights, pending
        forecasts and recalibration; a state written before it kept those bars: on the bars
        of the last refit (``window + r`` values at refit origin ``r``); none (a first step,
        or a checkpoint written before strategies kept state): on the bars so far, or no
        model could forecast until the next refit."""
        from ffe.forecast.base import Series

        s = self.strategy
        saved = self._saved.pop(series.symbol, None)
        if saved is not None and decider.resume(series, saved):
            if origin % s.refit_every == 0:
                decider.refit(series)
            return
        last_refit = origin - origin % s.refit_every
        if saved is None or last_refit == origin:
            decider.refit(series)
        else:
            n = s.window + last_refit
            decider.refit(Series(series.symbol, series.values[:n], series.times[:n]))

    def _new_decider(self) -> EnsembleDecider:
        from ffe.decide.ensemble import EnsembleDecider, EnsembleStrategy

        assert isinstance(self.strategy, EnsembleStrategy)  # checked in __init__
        decider = EnsembleDecider(self.strategy, self._extra)
        decider.on_forecast = self._on_forecast
        return decider


def stepper_for(strategy: Strategy, window: int | None = None) -> Stepper:
    """The stepper of ``strategy``; ``window`` bounds the history of a plain strategy that
    says how far back it looks (see ``StrategyStepper``)."""
    if getattr(strategy, "name", "") == "ensemble":
        return EnsembleStepper(strategy)
    return StrategyStepper(strategy, window)
