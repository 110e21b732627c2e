"""Parameter sweeps: one backtest per combination of a grid, spread over an executor.

A sweep can be stopped between points (``run_sweep(cancel=...)``): points not yet started
are dropped, and the worker processes end once the points they hold are done.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.kernel import BatchKernel, batchable
from ffe.compute import Executor, LocalExecutor
from ffe.decide.strategy import make_strategy
from ffe.domain.errors import ConfigError, FfeError
from ffe.domain.market import MarketData
from ffe.risk.engine import RiskEngine

_RANGE = re.compile(r"^(-?[\d.]+)\.\.(-?[\d.]+)(?::(-?[\d.]+))?$")
_MAX_COMBINATIONS = 100_000


class SweepStoppedError(FfeError):
    """The sweep was asked to stop (its ``cancel`` flag was set) before every point ran."""


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One grid point: its parameters and either its stats or why it could not run."""

    params: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def flat(self) -> dict[str, Any]:
        """Parameters and stats in one mapping (for tables and reports)."""
        return {**self.params, **self.stats, **({"error": self.error} if self.error else {})}


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["fast=5,10", "slow=20..60:20"]`` → ``{"fast": [5, 10], "slow": [20, 40, 60]}``.

    A range ``a..b:step`` includes ``b``; step defaults to 1.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ConfigError(f"parameter {spec!r} must look like name=1,2,3 or name=5..50:5")
        grid[name.strip()] = _values(name.strip(), values.strip())
    return grid


def parse_range(name: str, text: str) -> tuple[float, float, float | None] | None:
    """``"5..60"`` → ``(5.0, 60.0, None)``, ``"5..60:5"`` → ``(5.0, 60.0, 5.0)``; None when
    ``text`` is not a range (a list of values). The tuner reads its search space with it."""
    match = _RANGE.match(text)
    if match is None:
        return None
    try:
        start, stop = float(match.group(1)), float(match.group(2))
        step = None if match.group(3) is None else float(match.group(3))
    except ValueError:
        raise ConfigError(
            f"range for {name} must look like 5..60 or 5..60:5, got {text!r}"
        ) from None
    if (step is not None and step <= 0) or stop < start:
        raise ConfigError(f"range for {name} must go up with a positive step, got {text!r}")
    return start, stop, step


def _values(name: str, text: str) -> list[Any]:
    bounds = parse_range(name, text)
    if bounds is None:
        return [parse_number(part.strip()) for part in text.split(",") if part.strip()]
    start, stop, given = bounds
    step = 1.0 if given is None else given
    count = math.floor((stop - start) / step + 1e-9) + 1
    values = [start + i * step for i in range(count)]
    whole = all(v.is_integer() for v in (start, stop, step))
    return [int(v) if whole else round(v, 12) for v in values]


def parse_number(text: str) -> Any:
    """``text`` as an int, else a float, else the text itself (a grid value)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order."""
    names = list(grid)
    total = math.prod(len(values) for values in grid.values())
    if total > _MAX_COMBINATIONS:
        raise ConfigError(
            f"the grid has {total:,} combinations; the limit is {_MAX_COMBINATIONS:,}"
        )
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def run_sweep(
    market: MarketData,
    strategy: str,
    grid: Sequence[Mapping[str, Any]],
    config: BacktestConfig,
    risk: RiskEngine,
    *,
    jobs: int = 0,
    on_done: Callable[[SweepRow], None] | None = None,
    cancel: threading.Event | None = None,
    executor: Executor | None = None,
    batch: bool = True,
    fixed: Mapping[str, Any] | None = None,
) -> list[SweepRow]:
    """Backtest every grid point on ``executor`` (else a local pool of ``jobs`` processes:
    0 uses every core, 1 runs in process).

    With ``batch`` (the default), points of a strategy that shares its indicators run on the
    batch kernel (``ffe.backtest.kernel``) first, in large tasks; the points it does not model
    then run on the engine, spread over the executor like any sweep's. ``batch=False`` runs
    every point on the engine. The rows are the same either way. Points travel to the
    executor in tasks of several, so a task's work outweighs what sending it costs.

    Once ``cancel`` is set no further point is started or reported, and ``SweepStoppedError`` is
    raised (unless every point had already run). ``fixed`` parameters go to every point (a
    point's own win) but not into its row: the server's settings, such as the LLM voter's."""
    pool = executor or LocalExecutor(jobs)
    use_kernel = batch and batchable(market, strategy, config, risk)
    rows: list[SweepRow | None] = [None] * len(grid)
    todo = list(enumerate(dict(point) for point in grid))
    report = _Report(rows, on_done, cancel)
    if use_kernel:
        setup = _SweepSetup(market, strategy, config, risk, dict(fixed or {}), use_kernel=True)
        todo = _map(pool, _tasks(todo, pool.workers, use_kernel=True), setup, report)
    setup = _SweepSetup(market, strategy, config, risk, dict(fixed or {}))  # once per worker
    if todo and not report.stopped:
        _map(pool, _tasks(todo, pool.workers, use_kernel=False), setup, report)
    finished = [row for row in rows if row is not None]
    if len(finished) < len(grid):
        raise SweepStoppedError(
            f"the sweep was stopped after {len(finished)} of {len(grid)} points"
        )
    return finished


class _Report:
    """Files rows by grid position and passes each to ``on_done``, until ``cancel`` is set."""

    def __init__(
        self,
        rows: list[SweepRow | None],
        on_done: Callable[[SweepRow], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        self.rows, self.on_done, self.cancel = rows, on_done, cancel

    @property
    def stopped(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def row(self, position: int, row: SweepRow) -> None:
        self.rows[position] = row  # tasks finish in any order; keep the grid's
        if self.on_done is not None:
            self.on_done(row)


def _map(pool: Executor, tasks: list[_Task], setup: _SweepSetup, report: _Report) -> _Task:
    """Run ``tasks`` on ``pool``, reporting each row; the points left for the engine."""
    left: _Task = []
    # closing: when on_done raises, the worker processes are stopped now, not when the
    # traceback holding this frame is collected.
    with contextlib.closing(pool.map(_run_task, tasks, setup, cancel=report.cancel)) as found:
        for _, done in found:
            for position, params, row in done:
                if report.stopped:
                    return left  # the rest of this task ran, but the caller asked for no more
                if row is None:
                    left.append((position, params))
                else:
                    report.row(position, row)
    return left


# Points per task. On the engine a point takes about a millisecond, and a task of one point
# cost as much again in the pool's bookkeeping; a few points per task spread that, yet keep
# tasks short enough to stop soon after a cancel. On the batch kernel a point takes about half
# a millisecond and a task shares indicators between its points, while a spawned worker takes
# most of a second to start (its imports): a worker pays for itself from a couple of thousand
# points on. So a kernel task holds at least _KERNEL_TASK points (a smaller sweep is one task,
# run in the calling process: bench/README.md, "bench_sweep"), as many tasks as workers when
# the grid is large enough, and no task more than twice that, for progress and cancels.
_ENGINE_TASK = 8
_KERNEL_TASK = 2000

_Task = list[tuple[int, dict[str, Any]]]  # grid positions and parameters


def _tasks(points: _Task, workers: int, *, use_kernel: bool) -> list[_Task]:
    """Points cut into tasks of consecutive points (neighbours share indicators), no more
    points to a task than keeps every worker busy."""
    if not points:
        return []
    if use_kernel:
        count = max(
            math.ceil(len(points) / (2 * _KERNEL_TASK)),
            min(workers, len(points) // _KERNEL_TASK),
            1,
        )
    else:  # in process (one worker) a point per task: a cancel stops at the next point
        largest = _ENGINE_TASK if workers > 1 else 1
        count = max(math.ceil(len(points) / largest), min(workers, len(points)))
    size = math.ceil(len(points) / count)
    return [points[start : start + size] for start in range(0, len(points), size)]


@dataclass(frozen=True, slots=True)
class _SweepSetup:
    """What every grid point needs."""

    market: MarketData
    strategy: str
    config: BacktestConfig
    risk: RiskEngine
    fixed: dict[str, Any] = field(default_factory=dict)
    use_kernel: bool = False


def _run_task(setup: _SweepSetup, task: _Task) -> list[tuple[int, dict[str, Any], SweepRow | None]]:
    """Rows of a task's points: on the batch kernel with ``use_kernel`` (None for a point it
    leaves to the engine), else on the engine."""
    if not setup.use_kernel:
        return [(position, params, _run_point(setup, params)) for position, params in task]
    kernel = BatchKernel(setup.market, setup.strategy, setup.config, setup.risk)
    rows: list[tuple[int, dict[str, Any], SweepRow | None]] = []
    for position, params in task:
        run = kernel.run({**setup.fixed, **params})
        rows.append(
            (position, params, None if run is None else SweepRow(params, run.stats.as_dict()))
        )
    return rows


def _run_point(setup: _SweepSetup, params: dict[str, Any]) -> SweepRow:
    try:
        strategy = make_strategy(setup.strategy, {**setup.fixed, **params})
        result = run_backtest(setup.market, strategy, setup.config, setup.risk)
        return SweepRow(params, result.run_stats())
    except FfeError as exc:
        return SweepRow(params, error=str(exc))
