"""What the fake venues (``fake_binance``, ``fake_alphavantage``, ``fake_oanda``) share: a
venue clock that stands still or runs with real time, and bars generated from a seeded random
walk, so the same seed always gives the same bars.

A ``SeededSeries`` has bars every ``step_s`` seconds from ``origin``; a bar exists once it has
opened by the clock (the last one is still forming until ``time + step`` has passed). Tests cut
``gaps`` (bar times with no bar) and ``corrupt`` single bars (a field set to a bad value).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# open time (ms), open, high, low, close, volume
Bar = tuple[int, float, float, float, float, float]
_BLOCK = 4096  # bars drawn at a time


class VenueClock:
    """The venue's time in ms: real time (``start_ms=None``), or standing at ``start_ms`` until
    the test moves it with ``set``/``advance``."""

    def __init__(self, start_ms: int | None = None) -> None:
        self._fixed = start_ms
        self._lock = threading.Lock()

    @property
    def real(self) -> bool:
        return self._fixed is None

    def now_ms(self) -> int:
        with self._lock:
            return int(time.time() * 1000) if self._fixed is None else self._fixed

    def set(self, ms: int) -> None:
        with self._lock:
            self._fixed = ms

    def advance(self, seconds: float) -> None:
        with self._lock:
            assert self._fixed is not None, "a real-time clock cannot be moved"
            self._fixed += round(seconds * 1000)


@dataclass
class SeededSeries:
    """Bars of one symbol and bar length: a random walk from ``price``, seeded."""

    origin_ms: int
    step_s: int
    seed: int = 7
    price: float = 100.0
    gaps: set[int] = field(default_factory=set)  # open times (ms) with no bar
    corrupt: dict[int, dict[int, object]] = field(default_factory=dict)  # ms -> {column: value}
    duplicate: set[int] = field(default_factory=set)  # open times (ms) sent twice
    _blocks: list[npt.NDArray[np.float64]] = field(default_factory=list)

    @property
    def step_ms(self) -> int:
        return self.step_s * 1000

    def bars(self, start_ms: int, end_ms: int, now_ms: int, limit: int | None = None) -> list[Bar]:
        """Bars opening in [start_ms, end_ms] that have opened by ``now_ms``, oldest first,
        at most ``limit`` (the first ones)."""
        first = max(0, math.ceil((start_ms - self.origin_ms) / self.step_ms))
        last = min(end_ms, now_ms) - self.origin_ms
        if last < 0:
            return []
        rows: list[Bar] = []
        for index in range(first, last // self.step_ms + 1):
            if limit is not None and len(rows) >= limit:
                break
            bar = self.bar(index)
            if bar[0] in self.gaps:
                continue
            rows.append(bar)
            if bar[0] in self.duplicate:
                rows.append(bar)
        return rows

    def latest(self, count: int, now_ms: int) -> list[Bar]:
        """The last ``count`` bars opened by ``now_ms`` (the forming one included)."""
        start = max(self.origin_ms, now_ms - count * self.step_ms)
        return self.bars(start, now_ms, now_ms)[-count:]

    def bar(self, index: int) -> Bar:
        """Bar ``index`` (0 opens at the origin); the close of one is the open of the next."""
        block, at = divmod(index, _BLOCK)
        opened, closed, high_noise, low_noise, volume = self._block(block)[:, at]
        spread = abs(closed - opened) + opened * 0.001
        stamp = self.origin_ms + index * self.step_ms
        values: list[object] = [
            stamp,
            float(opened),
            float(max(opened, closed) + spread * high_noise),
            float(min(opened, closed) - spread * low_noise),
            float(closed),
            round(float(volume), 4),
        ]
        for column, value in self.corrupt.get(stamp, {}).items():
            values[column] = value
        return tuple(values)  # type: ignore[return-value]

    def _block(self, block: int) -> npt.NDArray[np.float64]:
        """Open, close, high noise, low noise and volume of ``_BLOCK`` bars from
        ``block * _BLOCK``, drawn once; each block's random draws depend only on the seed."""
        while len(self._blocks) <= block:
            number = len(self._blocks)
            rng = np.random.default_rng([self.seed, number])
            start = self._blocks[-1][1, -1] if self._blocks else self.price
            path = start * np.exp(np.cumsum(rng.normal(0.0, 0.002, _BLOCK + 1)))
            opens = np.concatenate([[start], path[:-2]])
            closes = path[:-1]
            noise = [rng.random(_BLOCK), rng.random(_BLOCK), rng.uniform(1, 100, _BLOCK)]
            self._blocks.append(np.vstack([opens, closes, *noise]))
        return self._blocks[block]
