"""``ffe data fetch``: page a live feed's closed bars into the data catalog, resumably.

What the catalog already holds of the symbol is not asked for again: only the bars before its
first one (when ``since`` is earlier) and after its last one. The new bars and the stored ones
are validated together and stored in one atomic write. If the venue fails part way through the
newer bars, the bars fetched so far are stored (they continue the stored ones without a hole),
so the same command carries on from there. Bad data from the venue stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ffe.data.catalog import CatalogEntry, DataCatalog, ImportSummary
from ffe.data.feed import FeedUnavailableError, LiveFeed
from ffe.data.validate import describe_time, nanos
from ffe.domain import DataError, Timeframe

Progress = Callable[[int, int], None]  # (bars done, bars expected)


@dataclass(frozen=True, slots=True)
class FetchSummary:
    """What one fetch asked for and stored."""

    symbol: str  # the catalog's name
    feed: str
    timeframe: Timeframe
    fetched: int  # new bars
    requests: int  # feed.fetch calls
    missing: int  # bars absent between new bars: the venue has none there; none invented
    largest_gap: tuple[pd.Timestamp, pd.Timestamp] | None  # the last bar before it, the next
    stored: ImportSummary | None  # None: nothing new

    def __str__(self) -> str:
        asked = f"{self.requests} request{'s' if self.requests != 1 else ''} to {self.feed}"
        if self.stored is None:
            news = f"no new closed {self.timeframe} bars"
            return f"{self.symbol} is up to date: {self.feed} has {news}"
        stored = self.stored
        text = (
            f"fetched {self.fetched:,} {self.timeframe} bars of {self.symbol} ({asked}); "
            f"{self.symbol} now holds {stored.count:,} bars from "
            f"{describe_time(pd.Timestamp(stored.first))} to "
            f"{describe_time(pd.Timestamp(stored.last))}"
        )
        if self.missing and self.largest_gap is not None:
            before, after = self.largest_gap
            text += (
                f"; {self.missing:,} bars missing (the venue has none; left as gaps, the "
                f"largest between {describe_time(before)} and {describe_time(after)})"
            )
        return text


def parse_time(text: str, option: str) -> pd.Timestamp:
    """A date or date-time given on the command line, as UTC."""
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        stamp = None
    if not isinstance(stamp, pd.Timestamp) or pd.isna(stamp):
        raise DataError(
            f"{option} {text!r} is not a date: write it like 2024-01-01 or 2024-01-01T12:00"
        )
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


async def fetch_into_catalog(
    catalog: DataCatalog,
    feed: LiveFeed,
    symbol: str,
    timeframe: Timeframe,
    since: pd.Timestamp,
    until: pd.Timestamp | None = None,
    *,
    store_as: str | None = None,
    progress: Progress | None = None,
) -> FetchSummary:
    """Fetch ``symbol``'s closed bars from ``since`` to ``until`` (exclusive; None: now) that
    the catalog lacks, and store them with the ones it has as ``store_as`` (default
    ``symbol``)."""
    if until is not None and until <= since:
        raise DataError(
            f"--until {describe_time(until)} is not after --since {describe_time(since)}: "
            "give an end later than the start"
        )
    name = store_as or symbol
    entry = catalog.fetched_entry(name)
    if entry is not None and (entry.feed != feed.name or entry.timeframe != timeframe):
        raise DataError(
            f"symbol {name!r} holds {entry.timeframe} bars from {entry.feed or entry.source_file}: "
            f"store {timeframe} bars of {feed.name} under another name (--as NAME)"
        )
    if until is None:
        now = end = await feed.venue_time()
    else:
        now, end = None, until
    spans = _ranges(since, end, entry, timeframe)
    pager = _Pager(feed, symbol, timeframe, spans, now, progress)
    try:
        await pager.run()
    except FeedUnavailableError as exc:
        if not pager.newer:
            raise
        partial, _ = _store(catalog, pager, name, entry)
        raise FeedUnavailableError(
            f"{exc} (stored the {pager.fetched:,} bars fetched before, up to "
            f"{describe_time(pd.Timestamp(partial.last))}: run the same command again for the rest)"
        ) from None
    if not pager.fetched:
        return FetchSummary(name, feed.name, timeframe, 0, pager.requests, 0, None, None)
    stored, merged = _store(catalog, pager, name, entry)
    missing, gap = _gaps(merged, timeframe)
    return FetchSummary(
        name, feed.name, timeframe, pager.fetched, pager.requests, missing, gap, stored
    )


def _ranges(
    since: pd.Timestamp, end: pd.Timestamp, entry: CatalogEntry | None, timeframe: Timeframe
) -> list[tuple[pd.Timestamp, pd.Timestamp, bool]]:
    """The spans to fetch, each ``(start, stop, newer)``: ``newer`` spans continue the stored
    bars (or there are none), so a partial one may be stored."""
    if entry is None:
        return [(since, end, True)] if since < end else []
    step = pd.Timedelta(seconds=timeframe.seconds)
    first, last = pd.Timestamp(entry.first), pd.Timestamp(entry.last)
    spans = [(since, min(first, end), False)] if since < min(first, end) else []
    after = max(since, last + step)
    return [*spans, (after, end, True)] if after < end else spans


class _Pager:
    """Asks the feed page after page over each span, keeping what came back."""

    def __init__(
        self,
        feed: LiveFeed,
        symbol: str,
        timeframe: Timeframe,
        spans: list[tuple[pd.Timestamp, pd.Timestamp, bool]],
        now: pd.Timestamp | None,
        progress: Progress | None,
    ) -> None:
        self.feed, self.symbol, self.timeframe, self.spans = feed, symbol, timeframe, spans
        self.now = now  # the venue's time: no bar starting later has closed
        self.progress = progress or (lambda done, total: None)
        self.step = pd.Timedelta(seconds=timeframe.seconds)
        self.older: list[pd.DataFrame] = []
        self.newer: list[pd.DataFrame] = []
        self.requests = 0
        self.total = sum(self._bars(start, stop) for start, stop, _ in spans)

    @property
    def fetched(self) -> int:
        return sum(len(frame) for frame in self.frames())

    def frames(self) -> list[pd.DataFrame]:
        return [*self.older, *self.newer]

    async def run(self) -> None:
        done = 0
        self.progress(0, self.total)
        for start, stop, newer in self.spans:
            older: list[pd.DataFrame] = []
            await self._span(start, stop, self.newer if newer else older, done)
            self.older += older  # only once whole: a part would leave a hole before the stored
            done += self._bars(start, stop)
            self.progress(done, self.total)

    async def _span(
        self, start: pd.Timestamp, stop: pd.Timestamp, into: list[pd.DataFrame], done: int
    ) -> None:
        cursor = start
        while cursor < stop and (self.now is None or cursor + self.step <= self.now):
            self.requests += 1
            page = await self.feed.fetch(self.symbol, self.timeframe, since=cursor)
            kept = page[pd.DatetimeIndex(page.index) < stop]
            if not kept.empty:
                into.append(kept)
            if page.empty or kept.empty:
                return
            following = pd.Timestamp(kept.index[-1]) + self.step
            if following <= cursor:
                raise DataError(f"{self.feed.name} answered bars before {describe_time(cursor)}")
            cursor = following
            self.progress(done + self._bars(start, min(cursor, stop)), self.total)

    def _bars(self, start: pd.Timestamp, stop: pd.Timestamp) -> int:
        return max(0, int(np.ceil((stop - start) / self.step)))


def _store(
    catalog: DataCatalog, pager: _Pager, name: str, entry: CatalogEntry | None
) -> tuple[ImportSummary, pd.DataFrame]:
    """Store the fetched bars with the stored ones; what was stored."""
    frames = pager.frames()
    if entry is not None:
        frames.append(catalog.load(name))
    merged = pd.concat(frames).sort_index()
    summary = catalog.store_fetched(merged, name, pager.timeframe, feed=pager.feed.name)
    return summary, merged


def _gaps(
    frame: pd.DataFrame, timeframe: Timeframe
) -> tuple[int, tuple[pd.Timestamp, pd.Timestamp] | None]:
    """Bars missing between consecutive stored bars, and the largest gap (the bars either
    side of it)."""
    index = pd.DatetimeIndex(frame.index)
    steps = np.diff(nanos(index)) // (timeframe.seconds * 1_000_000_000) - 1
    if steps.size == 0 or steps.max() <= 0:
        return 0, None
    at = int(steps.argmax())
    return int(steps[steps > 0].sum()), (index[at], index[at + 1])
