"""The search space of a study: one dimension per strategy parameter, read from the same
``name=5..60`` / ``name=5..60:5`` / ``name=1,2,3`` syntax as a sweep's grid.

A range whose bounds and step are whole numbers is a range of integers (step 1 when none is
given); any other range is a range of floats, continuous when it has no step. A list of values
is a choice among them. Each dimension asks an Optuna trial for its value, lists its values
for the grid sampler, and says whether a value sits on its edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ffe.backtest.sweep import parse_number, parse_range
from ffe.domain.errors import ConfigError

if TYPE_CHECKING:
    import optuna

_MAX_GRID = 1_000_000  # more grid points than any study runs; refused before listing them


@dataclass(frozen=True, slots=True)
class Dimension:
    """One parameter's values: a range (``low``..``high``, by ``step``; ``integer`` or float,
    ``step`` None for a continuous float range) or, when ``choices`` is given, a list."""

    name: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """This dimension's value for ``trial``, as Optuna's sampler picks it."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)

    def values(self) -> list[Any]:
        """Every value, for the grid sampler; a continuous range has no list of values."""
        if self.choices:
            return list(self.choices)
        if self.step is None and not self.integer:
            raise ConfigError(
                f"the grid sampler needs a step for {self.name}: give {self.name}="
                f"{self.low:g}..{self.high:g}:STEP, or use the tpe or random sampler"
            )
        step = self.step or 1.0
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        if self.integer:
            return [int(self.low + i * step) for i in range(count)]
        return [round(self.low + i * step, 12) for i in range(count)]

    def count(self) -> int:
        """How many values the grid sampler visits (ConfigError for a continuous range)."""
        if self.choices:
            return len(self.choices)
        if self.step is None and not self.integer:
            self.values()  # raises, saying what to give
        return math.floor((self.high - self.low) / (self.step or 1.0) + 1e-9) + 1

    def on_edge(self, value: Any) -> bool:
        """Whether ``value`` is the lowest or the highest this dimension allows (a choice
        among numbers counts by its smallest and largest; among words, never)."""
        if self.choices:
            numbers = [c for c in self.choices if _is_number(c)]
            if len(numbers) < 2 or len(numbers) != len(self.choices) or not _is_number(value):
                return False
            return bool(value in (min(numbers), max(numbers)))
        if not _is_number(value):
            return False
        # The highest value a stepped range reaches, which the stop need not be (5..61:5).
        highest = self.low + (self.count() - 1) * self.step if self.step else self.high
        return bool(math.isclose(value, self.low) or math.isclose(value, highest))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as a study stores its search space."""
        if self.choices:
            return {"name": self.name, "choices": list(self.choices)}
        return {
            "name": self.name,
            "low": int(self.low) if self.integer else self.low,
            "high": int(self.high) if self.integer else self.high,
            "step": self.step,
            "integer": self.integer,
        }

    def __str__(self) -> str:
        if self.choices:
            return f"{self.name}={','.join(str(c) for c in self.choices)}"
        bounds = f"{self.name}={self.low:g}..{self.high:g}"
        return bounds if self.step is None else f"{bounds}:{self.step:g}"


def parse_space(specs: Sequence[str]) -> tuple[Dimension, ...]:
    """``["fast=5..60", "slow=20..250:10", "mode=a,b"]`` → one dimension each, in order."""
    dimensions: dict[str, Dimension] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise ConfigError(
                f"parameter {spec!r} must look like name=5..60, name=5..60:5 or name=1,2,3"
            )
        if name in dimensions:
            raise ConfigError(f"parameter {name} is given twice: give each once")
        dimensions[name] = _dimension(name, text)
    if not dimensions:
        raise ConfigError("the search space is empty: give at least one --param, e.g. fast=5..60")
    return tuple(dimensions.values())


def _dimension(name: str, text: str) -> Dimension:
    bounds = parse_range(name, text)
    if bounds is None:
        choices = tuple(parse_number(part.strip()) for part in text.split(",") if part.strip())
        if not choices:
            raise ConfigError(f"parameter {name} has no values: give at least one")
        return Dimension(name, choices=tuple(dict.fromkeys(choices)))
    low, high, step = bounds
    integer = all(v.is_integer() for v in (low, high, step or 1.0))
    if integer:
        return Dimension(name, low, high, step, integer=True)
    return Dimension(name, low, high, step)


def space_from_dicts(items: Sequence[Mapping[str, Any]]) -> tuple[Dimension, ...]:
    """The inverse of ``Dimension.to_dict`` for a whole space (a stored study's)."""
    dimensions = []
    for item in items:
        if "choices" in item:
            dimensions.append(Dimension(str(item["name"]), choices=tuple(item["choices"])))
            continue
        step = item.get("step")
        dimensions.append(
            Dimension(
                str(item["name"]),
                float(item["low"]),
                float(item["high"]),
                None if step is None else float(step),
                integer=bool(item.get("integer")),
            )
        )
    return tuple(dimensions)


def grid_size(space: Sequence[Dimension]) -> int:
    """How many points the grid sampler has to visit (ConfigError past a million)."""
    total = 1
    for dimension in space:
        total *= dimension.count()
        if total > _MAX_GRID:
            raise ConfigError(
                f"the grid has more than {_MAX_GRID:,} points: give coarser steps "
                "(name=5..60:5) or use the tpe or random sampler"
            )
    return total


def edges(space: Sequence[Dimension], params: Mapping[str, Any]) -> list[str]:
    """The parameters of ``params`` that sit on the edge of their range, by name."""
    return [d.name for d in space if d.name in params and d.on_edge(params[d.name])]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
