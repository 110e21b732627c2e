"""What every feed shares: its options, retries with backoff, and turning a venue's rows into a
checked frame of closed bars."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from ffe.data.feed import FeedUnavailableError
from ffe.data.source import BAR_COLUMNS, TIME_INDEX
from ffe.data.validate import Rows, check_bars, conform, describe_time
from ffe.domain import DataError, Timeframe

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """How to reach one source: read from the settings by ``ffe.bootstrap.feeds``."""

    api_url: str | None  # the source's public REST base; None: the source's own default
    api_key: str | None = field(repr=False)  # Alpha Vantage's key, OANDA's token
    timeout_s: float  # per request
    retries: int  # after the first attempt, on rate limits, 5xx, timeouts and lost connections
    backoff_s: float  # the first wait; doubles each retry
    max_backoff_s: float  # the longest wait, Retry-After included
    rate_limit_ms: float | None = None  # ccxt: least time between requests; None: ccxt's own
    full_history: bool = False  # Alpha Vantage: outputsize=full (a premium key)


class RetryableError(Exception):
    """A failure worth asking again: rate limit, 5xx, timeout, lost connection."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


async def with_retries(
    feed: str, what: str, call: Callable[[], Awaitable[T]], options: FeedOptions
) -> T:
    """``call()``, asked again after each ``RetryableError`` failure with exponential backoff (or
    the venue's Retry-After); FeedUnavailableError once ``options.retries`` are spent."""
    attempts = options.retries + 1
    for attempt in range(attempts):
        try:
            return await call()
        except RetryableError as exc:
            if attempt + 1 == attempts:
                raise FeedUnavailableError(
                    f"{feed}: {what} failed {attempts} times; last: {exc.reason}. "
                    "The venue is down or limiting requests: try again later"
                ) from None
            wait = options.backoff_s * 2**attempt if exc.retry_after is None else exc.retry_after
            wait = min(wait, options.max_backoff_s)
            log.warning("%s: %s: %s; retry %d in %.2f s", feed, what, exc.reason, attempt + 1, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_after(headers: object) -> float | None:
    """Seconds from a Retry-After header (the seconds form), if there is one."""
    items = getattr(headers, "items", None)
    for name, value in items() if items else ():
        if str(name).lower() == "retry-after":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return seconds if seconds >= 0 else None
    return None


@dataclass(frozen=True, slots=True)
class _BarRows(Rows):
    """Rows of a venue's answer, named by their bar time (a venue has no lines)."""

    times: pd.DatetimeIndex | None = None

    @property
    def noun(self) -> str:
        return "bars"

    def where(self, position: int) -> str:
        assert self.times is not None
        return f"bar {describe_time(self.times[position])}"

    def error(self, position: int, message: str) -> DataError:
        return DataError(f"{self.where(position)}: {message}", path=self.source)


def bar_frame(
    times: pd.DatetimeIndex, values: npt.ArrayLike, *, source: str, timeframe: Timeframe
) -> pd.DataFrame:
    """A checked bar frame of a venue's rows (``values``: open, high, low, close, volume),
    in the venue's order; DataError naming the first bad bar and what is wrong with it."""
    array = np.asarray(values, dtype=np.float64).reshape(len(times), len(BAR_COLUMNS))
    frame = pd.DataFrame(array, index=pd.DatetimeIndex(times, name=TIME_INDEX), columns=BAR_COLUMNS)
    if frame.empty:
        return empty_bars()
    rows = _BarRows(f"{source} answered bad data", times=pd.DatetimeIndex(frame.index))
    return check_bars(conform(frame, rows), rows, timeframe)


def empty_bars() -> pd.DataFrame:
    """A bar frame without bars."""
    index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name=TIME_INDEX)
    return pd.DataFrame({name: np.empty(0) for name in BAR_COLUMNS}, index=index)


def closed_bars(
    frame: pd.DataFrame, timeframe: Timeframe, now: pd.Timestamp, since: pd.Timestamp | None
) -> pd.DataFrame:
    """The bars of ``frame`` from ``since`` that have closed by ``now``: a bar closes once
    ``time + timeframe`` is not after it."""
    index = pd.DatetimeIndex(frame.index)
    keep = index + pd.Timedelta(seconds=timeframe.seconds) <= now
    if since is not None:
        keep &= index >= since
    return frame[keep]


def utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """``stamp`` as tz-aware UTC (naive means UTC)."""
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
