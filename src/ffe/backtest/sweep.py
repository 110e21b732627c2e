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
        return [_number(part.strip()) for part in text.split(",") if part.strip()]
    start, stop, given = bounds
    step = 1.0 if given is None else given
    count = math.floor((stop - start) / step + 1e-9) + 1
    values = [start + i * step for i in range(count)]
    whole = all(v.is_integer() for v in (start, stop, step))
    return [int(v) if whole else round(v, 12) for v in values]


def _number(text: str) -> Any:
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
) -> list[SweepRow]:
    """Backtest every grid point on ``executor`` (else a local pool of ``jobs`` processes:
    0 uses every core, 1 runs in process).

    Once ``cancel`` is set no further point is started or reported, and ``SweepStoppedError`` is
    raised (unless every point had already run)."""
    pool = executor or LocalExecutor(jobs)
    setup = _SweepSetup(market, strategy, config, risk)  # sent once per worker, not per point
    points = [dict(point) for point in grid]
    rows: list[SweepRow | None] = [None] * len(grid)
    # closing: when on_done raises, the worker processes are stopped now, not when the
    # traceback holding this frame is collected.
    with contextlib.closing(pool.map(_run_point, points, setup, cancel=cancel)) as found:
        for position, row in found:
            rows[position] = row  # results arrive as they finish; keep the grid's order
            if on_done is not None:
                on_done(row)
    done = [row for row in rows if row is not None]
    if len(done) < len(grid):
        raise SweepStoppedError(f"the sweep was stopped after {len(done)} of {len(grid)} points")
    return done


@dataclass(frozen=True, slots=True)
class _SweepSetup:
    """What every grid point needs."""

    market: MarketData
    strategy: str
    config: BacktestConfig
    risk: RiskEngine


def _run_point(setup: _SweepSetup, params: dict[str, Any]) -> SweepRow:
    try:
        strategy = make_strategy(setup.strategy, params)
        result = run_backtest(setup.market, strategy, setup.config, setup.risk)
        return SweepRow(params, result.stats.as_dict())
    except FfeError as exc:
        return SweepRow(params, error=str(exc))
