"""Helpers shared by the benchmarks: interleaved timing, machine facts, tables, JSON output.

Nothing here imports a peer engine, so a benchmark can measure ffe in a process that never
loaded backtesting.py or backtrader.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The modules the optional compiled build turns into C extensions with mypyc (the list in
# [tool.hatch.build.targets.wheel.hooks.mypyc] of pyproject.toml).
COMPILED_MODULES = (
    "ffe.backtest.engine",
    "ffe.backtest.kernel",
    "ffe.risk.engine",
    "ffe.execution.simulated",
    "ffe.portfolio.ledger",
)
COMPILED, PURE = "compiled (mypyc)", "pure Python"


@dataclass(slots=True)
class Timing:
    """Wall-clock samples of one case, in seconds, and the value its last call returned."""

    samples: list[float] = field(default_factory=list)
    last: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.best,
            "max_s": max(self.samples),
            "repeats": len(self.samples),
        }


def time_once(func: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``func`` took, and what it returned.

    No ``gc.collect()`` before the call: a full collection walks the whole heap and leaves
    the CPU caches cold, which made a 3 ms ffe run about 1 ms slower when measured (as did
    reading a 64 MB array first), a cost a loop of backtests does not pay. Collections that
    fall inside a run are left in, as they are in use; taking turns spreads them out.
    """
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def interleaved(
    cases: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int
) -> dict[str, Timing]:
    """Time every case ``repeats`` times, taking turns, after ``warmup`` untimed rounds.

    Taking turns (and reversing the order every round) spreads slow spells of a shared
    machine over all cases instead of charging them to whichever case ran then.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    timings = {name: Timing() for name in names}
    for round_number in range(repeats):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            seconds, value = time_once(cases[name])
            timings[name].samples.append(seconds)
            timings[name].last = value
    return timings


def consecutive(func: Callable[[], Any], *, repeats: int) -> Timing:
    """Time ``repeats`` calls of ``func`` in a row (its caches stay warm between calls)."""
    timing = Timing()
    for _ in range(repeats):
        seconds, timing.last = time_once(func)
        timing.samples.append(seconds)
    return timing


def ffe_build() -> str:
    """Which ffe this process runs: COMPILED when the hot modules were loaded from extension
    modules, PURE when from ``.py`` files (``partly compiled`` for a mix)."""
    compiled = [
        not str(importlib.import_module(name).__file__).endswith(".py") for name in COMPILED_MODULES
    ]
    if all(compiled):
        return COMPILED
    return "partly compiled" if any(compiled) else PURE


def versions(*distributions: str) -> dict[str, str | None]:
    """Installed versions of Python and the named distributions (None when absent)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1_5_15": list(load) if load else None,
        "system": platform.system(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
    }


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_result(name: str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``bench/results/<name>.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns after the first."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(parts))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value >= 1e5:
            return f"{value:,.0f}"
        return f"{value:.4g}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"
