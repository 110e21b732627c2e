"""The live clock: a venue's bars, each stepped as it closes by the venue's clock.

``FeedClock`` waits for the next bar to close (the venue's clock, not the machine's, and its
calendar: no waiting for bars while a market is closed), fetches it from a ``LiveFeed`` and
ticks. It waits in short slices, and between them lets its agent obey control commands
(``idle``), so a stop, pause or emergency stop is carried out within a second while it waits.

Only a bar that arrives fresh is traded: the newest bar of its fetch, closed at most
``stale_bars`` bar intervals ago. Every other bar is history, stepped without orders (the
strategy sees it, fills due on it are booked): the bars before a run's first live bar
(warm-up), the bars missed while the agent was down (caught up after a restart), and bars the
feed delivers late after an outage (the gap filled). An outage (``FeedUnavailableError``) is
retried with a capped, doubling backoff. Each of these is reported through ``on_event``:
``feed_down``, ``feed_up``, ``stale``, ``gap_filled``, ``caught_up``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ffe.agent.clock import Sleep
from ffe.data.calendars import AlwaysOpen, VenueCalendar
from ffe.data.feed import FeedUnavailableError, LiveFeed
from ffe.domain.errors import ConfigError, DataError
from ffe.domain.market import MarketData
from ffe.domain.timeframe import Timeframe

log = logging.getLogger(__name__)

T = TypeVar("T")
OnFeedEvent = Callable[[str, str, dict[str, Any]], Awaitable[None]]
_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class FeedClockOptions:
    """How the live clock waits, fetches and judges its bars.

    ``warmup`` bars are fetched before a new run's first live bar (from ``start`` instead when
    given); the run ends after the bar at ``end``."""

    warmup: int = 500
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    grace_s: float = 0.25  # after a close, before asking: the venue publishes the bar
    slice_s: float = 0.25  # the longest wait between two looks at commands and signals
    poll_s: float = 0.5  # asking again when a closed bar is not yet published
    stale_bars: float = 2.0  # a bar older than this (bar intervals) at arrival is history
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    page: int = 1000  # bars per request

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.page < 2:
            raise ConfigError("the live clock needs warmup >= 1 and page >= 2")
        if not 0 < self.slice_s <= 0.5:
            raise ConfigError(f"slice_s must be in (0, 0.5] seconds, got {self.slice_s}")
        if not self.stale_bars > 0 or not 0 < self.backoff_s <= self.backoff_max_s:
            raise ConfigError("stale_bars must be positive and 0 < backoff_s <= backoff_max_s")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ConfigError(f"--end {self.end} is before --start {self.start}")


class FeedClock:
    """Ticks once for every bar of ``symbols`` that closes on ``feed``; see the module."""

    live = True

    def __init__(
        self,
        feed: LiveFeed,
        symbols: Sequence[str],
        timeframe: Timeframe,
        options: FeedClockOptions | None = None,
        calendar: VenueCalendar | None = None,
        *,
        now: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.feed, self.symbols, self.timeframe = feed, tuple(symbols), timeframe
        self.options = options or FeedClockOptions()
        self.calendar = calendar or AlwaysOpen()
        self._now, self._sleep = now, sleep
        self._offset = 0.0  # venue clock minus machine clock, seconds
        self.market = _empty(self.symbols, timeframe)
        self.history_through = -1  # bars up to this one are history: stepped, not traded
        self.finished = False  # the run reached ``end``
        self.feed_down_since: float | None = None
        self.stale = False
        self.idle: Callable[[], Awaitable[bool]] = _never
        self.on_event: OnFeedEvent = _ignore

    async def close(self) -> None:
        """Release the feed's connections; a failure is logged (the run is over)."""
        try:
            await self.feed.close()
        except Exception as exc:
            log.warning("could not close the feed %s: %s", self.feed.name, exc)

    def tradable(self, bar: int) -> bool:
        """Whether ``bar`` arrived fresh (see the module): only those are traded."""
        return bar > self.history_through

    # -- before the run -------------------------------------------------------------------

    async def prepare(self, origin: datetime | None) -> MarketData | None:
        """The bars to start from: from ``origin`` (the first bar of the run being resumed),
        else from ``start``, else the last ``warmup`` bars; all history. Retries outages
        until the feed answers; None when told to end first."""
        step = pd.Timedelta(seconds=self.timeframe.seconds)
        if origin is not None:
            since = pd.Timestamp(origin).tz_convert("UTC")
        elif self.options.start is not None:
            since = self.options.start
        else:
            since = None
        delay = self.options.backoff_s
        while True:
            try:
                venue = await self._venue_now()
                first = since if since is not None else venue - step * (self.options.warmup + 1)
                self.market = await self._fetch_since(first)
                await self._feed_up()
                break
            except _EndedError:
                return None
            except FeedUnavailableError as exc:
                await self._feed_down(exc)
                if await self._wait(delay):
                    return None
                delay = min(2 * delay, self.options.backoff_max_s)
        self.history_through = self.market.n_bars - 1
        return self.market

    async def report_catch_up(self, first: int) -> None:
        """Tell ``on_event`` which bars of a resumed run are stepped as history."""
        last = self.history_through
        if first > last:
            return
        data = self._span(first, last)
        what = "warmed up on" if first == 0 else "caught up"  # a new run, or a resumed one
        text = f"{what} {data['bars']} bars ({data['from']} to {data['to']}): history, not traded"
        await self.on_event("caught_up", text, data)

    # -- the ticks ------------------------------------------------------------------------

    async def ticks(self, start: int) -> AsyncIterator[tuple[MarketData, int]]:
        bar = start
        end = self.options.end
        while True:
            while bar < self.market.n_bars:
                if end is not None and self.market.times[bar] > np.datetime64(end.value, "ns"):
                    self.finished = True
                    return
                yield self.market, bar
                bar += 1
            if end is not None and self._next_start() > end:  # no bar to wait for before it
                self.finished = True
                return
            if not await self._next_bars():
                return

    async def _next_bars(self) -> bool:
        """Wait for and fetch the bars after the last one; False when told to end."""
        delay = 0.0
        while True:
            due = self._due() + self.options.grace_s - (self._now() + self._offset)
            if await self._wait(max(due, delay)):
                return False
            try:
                venue = await self._venue_now()
                fresh = await self._fetch_since(self._next_start())
            except _EndedError:
                return False
            except FeedUnavailableError as exc:
                await self._feed_down(exc)
                await self._check_stale(self._venue_guess())
                delay = self._backoff(delay)
                continue
            await self._feed_up()
            if fresh.n_bars:
                await self._append(fresh, venue)
                return True
            await self._check_stale(venue)
            delay = self.options.poll_s

    async def _append(self, fresh: MarketData, venue: pd.Timestamp) -> None:
        before = self.market.n_bars
        self.market = _joined(self.market, fresh)
        newest = self.market.n_bars - 1
        closed = _close_of(self.market, newest, self.timeframe)
        late = (venue - closed).total_seconds() > self.options.stale_bars * self.timeframe.seconds
        through = newest if late else newest - 1
        if through >= before:
            self.history_through = through
            data = self._span(before, through)
            text = f"{data['bars']} bars ({data['from']} to {data['to']}) came late: history"
            await self.on_event("gap_filled", text, data)
        if self.stale and not late:
            self.stale = False
            await self.on_event("fresh", f"{self.feed.name}: bars are fresh again", {})

    async def _check_stale(self, venue: pd.Timestamp) -> None:
        """No new bar: stale once the one expected closed ``stale_bars`` intervals ago."""
        expected_close = self._due()
        behind = venue.timestamp() - expected_close
        if behind <= self.options.stale_bars * self.timeframe.seconds or self.stale:
            return
        self.stale = True
        last = self._last_time()
        text = (
            f"{self.feed.name}: no new {self.timeframe} bar since "
            f"{'none' if last is None else last.isoformat()}: trading nothing until it comes"
        )
        data = {"last": None if last is None else last.isoformat(), "behind_s": behind}
        await self.on_event("stale", text, data)

    # -- waiting --------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` in slices, asking ``idle`` after each; True when told to end."""
        deadline = self._now() + max(0.0, seconds)
        while True:
            if await self.idle():
                return True
            left = deadline - self._now()
            if left <= 0:
                return False
            await self._sleep(min(left, self.options.slice_s))

    def _backoff(self, delay: float) -> float:
        o = self.options
        return o.backoff_s if delay < o.backoff_s else min(2 * delay, o.backoff_max_s)

    def _next_start(self) -> pd.Timestamp:
        """The start of the next bar the venue makes after the last one known."""
        last = self._last_time()
        step = self.timeframe.seconds
        if last is None:
            return self.calendar.next_bar(self._venue_guess(), step)
        return self.calendar.next_bar(last + pd.Timedelta(seconds=step), step)

    def _due(self) -> float:
        """When (venue clock, Unix seconds) the next bar closes."""
        return self._next_start().timestamp() + self.timeframe.seconds

    def _venue_guess(self) -> pd.Timestamp:
        """The venue's clock as last measured, without asking it."""
        return pd.Timestamp(self._now() + self._offset, unit="s", tz="UTC")

    def _last_time(self) -> pd.Timestamp | None:
        if self.market.n_bars == 0:
            return None
        return pd.Timestamp(int(self.market.times[-1].astype(np.int64)), tz="UTC")

    # -- the feed -------------------------------------------------------------------------

    async def _ask(self, call: Awaitable[T]) -> T:
        """``call``'s answer, asking ``idle`` every slice meanwhile (a venue that is slow to
        answer or times out must not hold up a stop); ``_EndedError`` when told to end."""
        task = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.options.slice_s)
                if done:
                    return task.result()
                if await self.idle():
                    raise _EndedError
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _venue_now(self) -> pd.Timestamp:
        venue = await self._ask(self.feed.venue_time())
        self._offset = venue.timestamp() - self._now()
        return venue

    async def _fetch_since(self, since: pd.Timestamp) -> MarketData:
        """Every closed bar of every symbol from ``since`` on, page by page, aligned; only up
        to the newest bar every symbol has reported (a later one may still come for some)."""
        frames = [await self._pages(symbol, since) for symbol in self.symbols]
        return _aligned(self.symbols, frames, self.timeframe)

    async def _pages(self, symbol: str, since: pd.Timestamp) -> pd.DataFrame:
        page, parts = self.options.page, []
        while True:
            frame = await self._ask(self.feed.fetch(symbol, self.timeframe, since, page))
            if len(frame) == 0:
                break
            parts.append(frame)
            if len(frame) < page:
                break
            since = pd.Timestamp(frame.index[-1]) + pd.Timedelta(seconds=self.timeframe.seconds)
        if not parts:
            return pd.DataFrame(columns=list(_FIELDS), index=pd.DatetimeIndex([], tz="UTC"))
        joined = pd.concat(parts)
        return joined[~joined.index.duplicated(keep="last")].sort_index()

    async def _feed_down(self, exc: Exception) -> None:
        if self.feed_down_since is not None:
            log.info("%s still unavailable: %s", self.feed.name, exc)
            return
        self.feed_down_since = time.monotonic()
        text = f"{self.feed.name} unavailable: {exc}"
        await self.on_event("feed_down", text, {"error": str(exc)})

    async def _feed_up(self) -> None:
        if self.feed_down_since is None:
            return
        down = time.monotonic() - self.feed_down_since
        self.feed_down_since = None
        text = f"{self.feed.name} answers again after {down:.1f} s"
        await self.on_event("feed_up", text, {"down_s": round(down, 3)})

    def _span(self, first: int, last: int) -> dict[str, Any]:
        return {
            "bars": last - first + 1,
            "from": self.market.time_of(first).isoformat(),
            "to": self.market.time_of(last).isoformat(),
        }


def _close_of(market: MarketData, bar: int, timeframe: Timeframe) -> pd.Timestamp:
    opened = pd.Timestamp(int(market.times[bar].astype(np.int64)), tz="UTC")
    return opened + pd.Timedelta(seconds=timeframe.seconds)


def _empty(symbols: tuple[str, ...], timeframe: Timeframe) -> MarketData:
    none = np.empty((0, len(symbols)))
    times = np.empty(0, dtype="datetime64[ns]")
    return MarketData(symbols, times, none, none, none, none, none, timeframe)


def _aligned(
    symbols: tuple[str, ...], frames: list[pd.DataFrame], timeframe: Timeframe
) -> MarketData:
    """The frames on one time axis (NaN where a symbol has no bar), cut at the newest time
    every symbol has reached."""
    if any(len(frame) == 0 for frame in frames):
        return _empty(symbols, timeframe)
    reached = min(pd.Timestamp(frame.index[-1]) for frame in frames)
    index = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames))))
    index = index[index <= reached]
    arrays = {
        name: np.column_stack([f[name].reindex(index).to_numpy(np.float64) for f in frames])
        for name in _FIELDS
    }
    times = index.tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
    return MarketData(symbols, times, **arrays, timeframe=timeframe)


def _joined(known: MarketData, fresh: MarketData) -> MarketData:
    """``known`` followed by the bars of ``fresh`` newer than its last."""
    if known.n_bars == 0:
        return fresh
    if fresh.symbols != known.symbols:
        raise DataError(f"the feed changed symbols: {known.symbols} -> {fresh.symbols}")
    newer = fresh.times > known.times[-1]
    arrays = {n: np.vstack([getattr(known, n), getattr(fresh, n)[newer]]) for n in _FIELDS}
    times = np.concatenate([known.times, fresh.times[newer]])
    return MarketData(known.symbols, times, **arrays, timeframe=known.timeframe)


class _EndedError(Exception):
    """Told to end (``idle``) while the feed was still answering."""


async def _never() -> bool:
    return False


async def _ignore(kind: str, text: str, data: dict[str, Any]) -> None:
    return None
