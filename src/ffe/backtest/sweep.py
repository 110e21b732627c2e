"""Parameter sweeps: one backtest per combination of a grid, on all local cores."""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.decide.strategy import make_strategy
from ffe.domain.errors import ConfigError, FfeError
from ffe.domain.market import MarketData
from ffe.risk.engine import RiskEngine

_RANGE = re.compile(r"^(-?[\d.]+)\.\.(-?[\d.]+)(?::(-?[\d.]+))?$")
_MAX_COMBINATIONS = 100_000


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


def _values(name: str, text: str) -> list[Any]:
    match = _RANGE.match(text)
    if match is None:
        return [_number(part.strip()) for part in text.split(",") if part.strip()]
    start, stop = float(match.group(1)), float(match.group(2))
    step = float(match.group(3) or 1)
    if step <= 0 or stop < start:
        raise ConfigError(f"range for {name} must go up with a positive step, got {text!r}")
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
) -> list[SweepRow]:
    """Backtest every grid point; ``jobs=0`` uses every core, ``jobs=1`` runs in process."""
    workers = min(len(grid), jobs if jobs > 0 else (os.cpu_count() or 1)) or 1
    rows: list[SweepRow | None] = [None] * len(grid)
    for position, row in _results(market, strategy, grid, config, risk, workers):
        rows[position] = row  # results arrive as they finish; keep the grid's order
        if on_done is not None:
            on_done(row)
    return [row for row in rows if row is not None]


def _results(
    market: MarketData,
    strategy: str,
    grid: Sequence[Mapping[str, Any]],
    config: BacktestConfig,
    risk: RiskEngine,
    workers: int,
) -> Iterator[tuple[int, SweepRow]]:
    if workers == 1:
        _init_worker(market, strategy, config, risk)
        yield from ((i, _run_point(dict(point))) for i, point in enumerate(grid))
        return
    with ProcessPoolExecutor(
        # spawn, not fork: a child forked from a process whose OpenMP threads (LightGBM)
        # have started can hang for ever.
        mp_context=multiprocessing.get_context("spawn"),
        max_workers=workers,
        initializer=_init_worker,
        initargs=(market, strategy, config, risk),
    ) as pool:
        futures = {pool.submit(_run_point, dict(point)): i for i, point in enumerate(grid)}
        for future in as_completed(futures):
            yield futures[future], future.result()


_WORKER: dict[str, Any] = {}


def _init_worker(
    market: MarketData, strategy: str, config: BacktestConfig, risk: RiskEngine
) -> None:
    # The market is sent once per worker process, not once per grid point.
    _WORKER.update(market=market, strategy=strategy, config=config, risk=risk)


def _run_point(params: dict[str, Any]) -> SweepRow:
    try:
        strategy = make_strategy(_WORKER["strategy"], params)
        result = run_backtest(_WORKER["market"], strategy, _WORKER["config"], _WORKER["risk"])
        return SweepRow(params, result.stats.as_dict())
    except FfeError as exc:
        return SweepRow(params, error=str(exc))
