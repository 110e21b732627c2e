"""Clocks drive the agent: each tick is the market as known so far and its newest bar.

``ReplayClock`` walks through stored bars, as fast as it can or ``speed`` bars per second.
``PollingClock`` asks a data source for bars once per bar interval and ticks for every bar
newer than the last one it has seen; its market only ever grows, so bar positions stay valid.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import numpy as np

from ffe.domain.errors import ConfigError, DataError
from ffe.domain.market import MarketData, utc_datetime

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]


def utcnow() -> datetime:
    """The wall-clock time now, in UTC, as the agent stamps what it journals."""
    return utc_datetime(time.time_ns())


class ReplayClock:
    """Every bar of ``market`` from ``start`` on, in order."""

    live = False

    def __init__(
        self, market: MarketData, *, speed: float | None = None, sleep: Sleep = asyncio.sleep
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be a positive number of bars per second, got {speed}")
        self.market = market
        self.speed = speed
        self._sleep = sleep

    async def ticks(self, start: int) -> AsyncIterator[tuple[MarketData, int]]:
        period = None if self.speed is None else 1.0 / self.speed
        due = time.monotonic()
        for bar in range(start, self.market.n_bars):
            if period is not None:
                due += period
                await self._sleep(max(0.0, due - time.monotonic()))
            yield self.market, bar


class PollingClock:
    """Bars from ``fetch`` (the latest bars of the traded symbols), polled every
    ``interval_s`` seconds; ticks once for each bar newer than the last one seen, and ends
    after the bar at ``end`` (``finished``). With an ``idle`` hook (the agent sets one that
    obeys its commands and signals) it waits in slices of at most ``SLICE_S`` and ends when
    the hook says so."""

    live = True
    SLICE_S = 0.25

    def __init__(
        self,
        fetch: Callable[[], Awaitable[MarketData]],
        interval_s: float,
        *,
        sleep: Sleep = asyncio.sleep,
        max_polls: int | None = None,
        end: datetime | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not interval_s > 0:
            raise ConfigError(f"the polling interval must be positive, got {interval_s}")
        self._fetch = fetch
        self.interval_s = interval_s
        self._sleep = sleep
        self._max_polls = max_polls
        self._end = None if end is None else end.timestamp()
        self._now = now
        self.market: MarketData | None = None
        self.idle: Callable[[], Awaitable[bool]] | None = None
        self.finished = False

    async def ticks(self, start: int) -> AsyncIterator[tuple[MarketData, int]]:
        polls = 0
        while self._max_polls is None or polls < self._max_polls:
            polls += 1
            try:
                fresh = await self._fetch()
            except DataError as exc:
                log.warning("no new bars this time: %s", exc)
                fresh = None
            if fresh is not None and fresh.n_bars > 0:  # an empty first market has no last bar
                before = 0 if self.market is None else self.market.n_bars
                self.market = fresh if self.market is None else _append(self.market, fresh)
                for bar in range(max(before, start), self.market.n_bars):
                    if self._past_end(self.market.times[bar]):
                        self.finished = True
                        return
                    yield self.market, bar
            if self._end is not None and self._now() > self._end + self.interval_s:
                self.finished = True  # every bar up to the end has closed, and was read
                return
            if await self._wait():
                return

    def _past_end(self, time_: np.datetime64) -> bool:
        return self._end is not None and time_.astype("datetime64[ns]").astype(np.int64) > (
            self._end * 1e9
        )

    async def _wait(self) -> bool:
        """Sleep one interval (in slices asking ``idle`` when there is one); True to end."""
        if self.idle is None:
            await self._sleep(self.interval_s)
            return False
        slices = max(1, math.ceil(self.interval_s / self.SLICE_S))
        for _ in range(slices):
            if await self.idle():
                return True
            await self._sleep(self.interval_s / slices)
        return False


def _append(known: MarketData, fresh: MarketData) -> MarketData:
    """``known`` followed by the bars of ``fresh`` that are newer than its last bar."""
    if fresh.symbols != known.symbols:
        raise DataError(f"the data source changed symbols: {known.symbols} -> {fresh.symbols}")
    newer = np.flatnonzero(fresh.times > known.times[-1])
    if newer.size == 0:
        return known
    pick = slice(int(newer[0]), None)
    return MarketData(
        known.symbols,
        np.concatenate([known.times, fresh.times[pick]]),
        np.vstack([known.open, fresh.open[pick]]),
        np.vstack([known.high, fresh.high[pick]]),
        np.vstack([known.low, fresh.low[pick]]),
        np.vstack([known.close, fresh.close[pick]]),
        np.vstack([known.volume, fresh.volume[pick]]),
        known.timeframe,
    )
