"""The look-ahead check: poison the future and see whether the past changes.

For each of several cut points ``t`` the strategy runs twice: on the real bars, and on a
copy of the same length whose bars after ``t`` are garbage (reversed, rescaled prices;
scrambled volume). Every instruction and every decision at or before ``t`` must come out
the same. This adds to ``verify_point_in_time`` (which hides the future by truncating
history, once per run): the history keeps its length, so code that depends on the length
runs the same way; the poisoned copy is a new ``MarketData``, so even a strategy that
reaches past ``History`` into the market behind it sees garbage; and decisions (confidence,
rationale) are compared as well as targets. Each run may also happen in a fresh process
(``fresh_processes``, what ``ffe check lookahead`` does), so nothing a strategy memoizes
outside its instance survives from the real run into a poisoned one.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np

from ffe.backtest.causality import batch_explained, first_difference
from ffe.decide.strategy import Explained, Strategy
from ffe.domain.errors import ConfigError, FfeError, StrategyError
from ffe.domain.market import FloatArray, MarketData
from ffe.domain.orders import Decision

StrategySource = Strategy | Callable[[], Strategy]

_SCALE_RANGE = (math.log(1.5), math.log(3.0))  # how far garbage prices sit from real ones
_NOISE = 0.05  # per-bar jitter of garbage closes (log scale)


@dataclass(frozen=True, slots=True)
class Change:
    """The first instruction or decision that differed at or before a cut."""

    bar: int
    time: datetime
    symbol: str
    kind: str  # "target" or "decision"
    real: str
    poisoned: str

    def describe(self) -> str:
        """One line naming the bar, the symbol and both values."""
        return (
            f"{self.kind} for {self.symbol} at {when(self.time)} (bar {self.bar}) "
            f"changed from {self.real} to {self.poisoned}"
        )


@dataclass(frozen=True, slots=True)
class CutCheck:
    """One cut point: bars after ``cut`` were poisoned; ``change`` is None when nothing
    at or before it moved."""

    cut: int
    time: datetime
    change: Change | None = None

    @property
    def passed(self) -> bool:
        return self.change is None

    def to_dict(self) -> dict[str, Any]:
        change = self.change
        return {
            "cut_bar": self.cut,
            "cut_time": self.time.isoformat(),
            "passed": self.passed,
            "first_change": None
            if change is None
            else {
                "bar": change.bar,
                "time": change.time.isoformat(),
                "symbol": change.symbol,
                "kind": change.kind,
                "real": change.real,
                "poisoned": change.poisoned,
            },
        }


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    """Every cut of a look-ahead check, in time order."""

    strategy: str
    n_bars: int
    cuts: tuple[CutCheck, ...]

    @property
    def passed(self) -> bool:
        return all(cut.passed for cut in self.cuts)

    @property
    def first_failure(self) -> CutCheck | None:
        """The failing cut whose change comes earliest, or None when all passed."""
        failed = [(cut.change.bar, cut.cut, cut) for cut in self.cuts if cut.change is not None]
        return min(failed, key=lambda item: item[:2])[2] if failed else None

    def message(self) -> str:
        """A one-line verdict naming the first changed bar when the check failed."""
        failure = self.first_failure
        if failure is None or failure.change is None:
            return (
                f"strategy {self.strategy!r} passed: nothing at or before any of "
                f"{len(self.cuts)} cut points changed when the bars after it were poisoned"
            )
        return (
            f"strategy {self.strategy!r} looks ahead: when the bars after "
            f"{when(failure.time)} (bar {failure.cut}) were poisoned, its "
            f"{failure.change.describe()}. A strategy may only use bars up to the one it "
            "decides on."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "bars": self.n_bars,
            "passed": self.passed,
            "message": self.message(),
            "cuts": [cut.to_dict() for cut in self.cuts],
        }


def check_lookahead(
    strategy: StrategySource,
    market: MarketData,
    cuts: int | Sequence[int] = 3,
    *,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
    fresh_processes: bool = False,
) -> LookaheadReport:
    """Run ``strategy`` on ``market`` and on one poisoned copy per cut point; report, per cut,
    the first instruction or decision at or before it that changed.

    ``strategy`` is a strategy, or a callable that builds one (then every run gets a fresh
    instance, so state left by one run cannot hide or fake a difference in the next).
    ``cuts`` is a number of cut points spread over the bars after the warm-up, or the bars
    themselves. ``progress`` is called after each strategy run (``cuts + 1`` in all).
    With ``fresh_processes`` each run happens in a new interpreter of its own, one at a time:
    what a strategy keeps outside its instance (a module-level memo of the real bars) cannot
    carry the real future into a poisoned run either.
    """
    build = _builder(strategy, picklable=fresh_processes)
    first = build()
    points = _cut_bars(market.n_bars, first.warmup(), cuts)
    with _runner(fresh_processes) as run:
        real = run(build, market) if fresh_processes else batch_explained(first, market)
        _tick(progress)
        checks = []
        for cut in points:
            poisoned = _explain_poisoned(run, build, first.name, market, cut, seed + cut)
            checks.append(
                CutCheck(cut, market.time_of(cut), _first_change(market, real, poisoned, cut))
            )
            _tick(progress)
    return LookaheadReport(first.name, market.n_bars, tuple(checks))


Run = Callable[[Callable[[], Strategy], MarketData], Explained]


def _build_and_explain(build: Callable[[], Strategy], market: MarketData) -> Explained:
    return batch_explained(build(), market)


@contextmanager
def _runner(fresh_processes: bool) -> Iterator[Run]:
    """What builds and runs the strategy: here, or each run in a new spawned process (the
    builder pickled to it, with the strategy files this process read, sent by value:
    ``ffe.compute.carry``)."""
    if not fresh_processes:
        yield _build_and_explain
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ffe.compute.carry import carried, install

    pool = ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        max_tasks_per_child=1,  # a new interpreter for every run
        initializer=install,
        initargs=(carried(),),
    )
    with pool:
        yield lambda build, market: pool.submit(_build_and_explain, build, market).result()


def cut_points(n_bars: int, warmup: int, count: int) -> list[int]:
    """``count`` cut bars evenly spread from the end of the warm-up to the second-last bar
    (the last bar has no future to poison); fewer when the data is too short."""
    last = n_bars - 2
    if count < 1 or last < 0:
        return []
    first = min(max(warmup, 0), last)
    spread = np.linspace(first, last, count + 1)[1:] if first < last else np.array([last])
    return sorted(set(np.rint(spread).astype(int).tolist()))


def poison_after(market: MarketData, cut: int, *, seed: int = 0) -> MarketData:
    """A copy of ``market`` with the same bars up to ``cut`` and garbage after it.

    Garbage prices are the real future reversed in time and rescaled by a random factor per
    symbol (with some jitter), kept positive, finite and in order (low <= open, close <=
    high); volume is the future's volume scrambled. Every value after ``cut`` differs from
    the real one, including where the real bar was missing (NaN).
    """
    if not 0 <= cut < market.n_bars:
        raise ValueError(f"cut {cut} outside 0..{market.n_bars - 1}")
    start = cut + 1
    rng = np.random.default_rng(seed)
    shape = (market.n_bars - start, market.n_symbols)
    if shape[0] == 0:
        return market
    anchor = _last_prices(market, start)
    real_close = market.close[start:]
    base = np.where(np.isfinite(real_close) & (real_close > 0), real_close, anchor)[::-1]
    scale = np.exp(rng.uniform(*_SCALE_RANGE, shape[1]) * rng.choice([-1.0, 1.0], shape[1]))
    close = _differ(base * scale * np.exp(rng.normal(0.0, _NOISE, shape)), real_close, 1.5)
    open_ = _differ(close * np.exp(rng.normal(0.0, _NOISE, shape)), market.open[start:], 1.5)
    wick = np.exp(np.abs(rng.normal(0.0, _NOISE, (2, *shape))))
    high = _differ(np.maximum(open_, close) * wick[0], market.high[start:], 1.1)
    low = _differ(np.minimum(open_, close) / wick[1], market.low[start:], 1 / 1.1)
    real_volume = market.volume[start:]
    volume = rng.permuted(np.nan_to_num(real_volume[::-1], nan=1.0).ravel()).reshape(shape)
    volume = _differ(np.abs(volume) * rng.uniform(0.5, 2.0, shape) + 1.0, real_volume, 2.0)
    garbage = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return MarketData(
        market.symbols,
        market.times,
        timeframe=market.timeframe,
        **{name: np.vstack([getattr(market, name)[:start], garbage[name]]) for name in garbage},
    )


def when(time: datetime) -> str:
    """A bar time for people: the date alone for a bar at midnight UTC."""
    return time.isoformat().removesuffix("T00:00:00+00:00")


def _builder(source: StrategySource, *, picklable: bool = False) -> Callable[[], Strategy]:
    if isinstance(source, Strategy) and not isinstance(source, type):
        if picklable:  # a copy of it in each process
            return functools.partial(copy.copy, source)
        return lambda: source
    return cast("Callable[[], Strategy]", source)  # a class, or any callable building one


def _tick(progress: Callable[[], None] | None) -> None:
    if progress is not None:
        progress()


def _cut_bars(n_bars: int, warmup: int, cuts: int | Sequence[int]) -> list[int]:
    if isinstance(cuts, int):
        points = cut_points(n_bars, warmup, cuts)
        if not points:
            raise ConfigError(
                f"a look-ahead check needs at least one cut and 2 bars; got cuts={cuts} "
                f"over {n_bars} bars"
            )
        return points
    bad = [cut for cut in cuts if not 0 <= cut < n_bars - 1]
    if bad:
        raise ConfigError(
            f"cut bars {bad} are outside 0..{n_bars - 2} (each cut needs a bar after it)"
        )
    return sorted(set(cuts))


def _explain_poisoned(
    run: Run, build: Callable[[], Strategy], name: str, market: MarketData, cut: int, seed: int
) -> Explained:
    try:
        return run(build, poison_after(market, cut, seed=seed))
    except (FfeError, ArithmeticError, ValueError) as exc:
        raise StrategyError(
            f"strategy {name!r} failed on the copy whose bars after "
            f"{when(market.time_of(cut))} are poisoned: {exc}"
        ) from exc


def _first_change(
    market: MarketData, real: Explained, poisoned: Explained, cut: int
) -> Change | None:
    changes = [
        change
        for change in (
            _target_change(market, real.targets, poisoned.targets, cut),
            _decision_change(market, real.decisions, poisoned.decisions, cut),
        )
        if change is not None
    ]
    return min(changes, key=lambda change: change.bar, default=None)


def _target_change(
    market: MarketData, real: FloatArray, poisoned: FloatArray, cut: int
) -> Change | None:
    found = first_difference(real[: cut + 1], poisoned[: cut + 1])
    if found is None:
        return None
    bar, column = found
    return Change(
        bar,
        market.time_of(bar),
        market.symbols[column],
        "target",
        _number(float(real[bar, column])),
        _number(float(poisoned[bar, column])),
    )


def _decision_change(
    market: MarketData,
    real: Sequence[Decision],
    poisoned: Sequence[Decision],
    cut: int,
) -> Change | None:
    until = market.time_of(cut)
    mine, theirs = _decisions_until(real, until), _decisions_until(poisoned, until)
    for index in range(max(len(mine), len(theirs))):
        a = mine[index] if index < len(mine) else None
        b = theirs[index] if index < len(theirs) else None
        if a is not None and b is not None and _same_decision(a, b):
            continue
        first = min((d for d in (a, b) if d is not None), key=_decision_key)
        bar = _bar_of(market, first.time)
        return Change(bar, market.time_of(bar), first.symbol, "decision", _show(a), _show(b))
    return None


def _decisions_until(decisions: Sequence[Decision], until: datetime) -> list[Decision]:
    return sorted((d for d in decisions if d.time <= until), key=_decision_key)


def _decision_key(decision: Decision) -> tuple[datetime, str]:
    return decision.time, decision.symbol


def _same_decision(a: Decision, b: Decision) -> bool:
    return (
        (a.time, a.symbol, a.rationale) == (b.time, b.symbol, b.rationale)
        and _same_number(a.target, b.target)
        and _same_number(a.confidence, b.confidence)
    )


def _same_number(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _show(decision: Decision | None) -> str:
    if decision is None:
        return "absent"
    return (
        f"target {_number(decision.target)} confidence {_number(decision.confidence)} "
        f"rationale {decision.rationale!r}"
    )


def _number(value: float) -> str:
    return "no instruction (NaN)" if math.isnan(value) else f"{value:.6g}"


def _bar_of(market: MarketData, time: datetime) -> int:
    """The bar at ``time``, or the last one before it."""
    naive = time.astimezone(UTC).replace(tzinfo=None) if time.tzinfo else time
    found = int(np.searchsorted(market.times, np.datetime64(naive, "ns"), side="right")) - 1
    return min(max(found, 0), market.n_bars - 1)


def _last_prices(market: MarketData, start: int) -> FloatArray:
    """Per symbol, the last positive close before ``start``; 1.0 for a symbol with none."""
    marks = market.mark[start - 1] if start > 0 else np.full(market.n_symbols, np.nan)
    return np.where(np.isfinite(marks) & (marks > 0), marks, 1.0)


def _differ(garbage: FloatArray, real: FloatArray, nudge: float) -> FloatArray:
    # Scaled garbage can equal the real value by chance; nudge it away (NaN never equals).
    return np.where(garbage == real, garbage * nudge, garbage)
