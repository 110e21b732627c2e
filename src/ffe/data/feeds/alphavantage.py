"""Daily and intraday bars of Alpha Vantage (``alphavantage``), with an API key.

``TIME_SERIES_DAILY`` (raw, as-traded prices: not adjusted for splits or dividends) for
``1d``; ``TIME_SERIES_INTRADAY`` with ``adjusted=false`` (raw too) and
``extended_hours=false`` (the regular session) for 1m, 5m, 15m, 30m and 1h. Both are free;
the free tier answers ``outputsize=compact`` (the latest 100 bars), ``outputsize=full`` needs a
premium key (``full_history``), and with it intraday history is asked a month at a time.

An over-limit answer is HTTP 200 with a ``Note`` or ``Information`` body: that is a rate limit
(asked again with backoff, then FeedUnavailableError), never data. ``Error Message`` (an unknown
symbol, a bad call) is a DataError. Alpha Vantage has no clock to ask, so the venue's time is
this machine's (UTC); intraday times are US/Eastern, as its answer says, turned into UTC and
taken as each bar's start (Alpha Vantage does not say which end it stamps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd

from ffe.data.feeds._common import (
    FeedOptions,
    RetryableError,
    bar_frame,
    closed_bars,
    empty_bars,
    utc,
    with_retries,
)
from ffe.domain import ConfigError, DataError, Timeframe

log = logging.getLogger(__name__)
DEFAULT_URL = "https://www.alphavantage.co/query"
INTERVALS = {"1m": "1min", "5m": "5min", "15m": "15min", "30m": "30min", "1h": "60min"}
_FIELDS = ("1. open", "2. high", "3. low", "4. close", "5. volume")
_LIMITED = ("Note", "Information")  # its over-limit (and premium-only) answers


class AlphaVantageFeed:
    """Closed daily or intraday bars of one equity (or ETF) by its ticker."""

    name = "alphavantage"

    def __init__(
        self, options: FeedOptions, *, clock: Callable[[], pd.Timestamp] | None = None
    ) -> None:
        if not options.api_key:
            raise ConfigError(
                "alphavantage needs an API key: set data.alpha_vantage_key "
                "(a free one from https://www.alphavantage.co/support/#api-key)"
            )
        self._options, self._key = options, options.api_key
        self._url = options.api_url or DEFAULT_URL
        self._clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self._client = httpx.AsyncClient(timeout=options.timeout_s)

    async def venue_time(self) -> pd.Timestamp:
        return utc(self._clock())

    async def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        since: pd.Timestamp | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        params = self._params(symbol, timeframe)
        since = None if since is None else utc(since)
        now = await self.venue_time()
        month = self._first_month(params, since, now)
        while True:
            if month is not None:
                params["month"] = month.strftime("%Y-%m")
            frame = closed_bars(await self._series(params, timeframe), timeframe, now, since)
            if not frame.empty or month is None or month >= _month(now):
                break
            month += 1  # nothing left in that month: the next one
        if since is not None and month is None and not frame.empty and frame.index[0] > since:
            log.info("alphavantage: %s %s starts %s, after %s (compact: the latest 100 bars)",
                     symbol, timeframe, frame.index[0], since)  # fmt: skip
        return frame if limit is None else frame.iloc[:limit]

    async def close(self) -> None:
        await self._client.aclose()

    def _params(self, symbol: str, timeframe: Timeframe) -> dict[str, str]:
        size = "full" if self._options.full_history else "compact"
        common = {"symbol": symbol, "outputsize": size, "apikey": self._key}
        if str(timeframe) == "1d":
            return {"function": "TIME_SERIES_DAILY", **common}
        if str(timeframe) in INTERVALS:
            return {"function": "TIME_SERIES_INTRADAY", "interval": INTERVALS[str(timeframe)],
                    "adjusted": "false", "extended_hours": "false", **common}  # fmt: skip
        raise DataError(
            f"alphavantage has no {timeframe} bars: use 1d, or one of {', '.join(INTERVALS)}"
        )

    def _first_month(
        self, params: dict[str, str], since: pd.Timestamp | None, now: pd.Timestamp
    ) -> pd.Period | None:
        """The month to ask intraday history for, a month at a time (full history only);
        None: ask for the latest bars."""
        intraday = params["function"] == "TIME_SERIES_INTRADAY"
        if not (intraday and self._options.full_history and since is not None):
            return None
        first = _month(since)
        return first if first < _month(now) else None

    async def _series(self, params: dict[str, str], timeframe: Timeframe) -> pd.DataFrame:
        what = f"fetch {params['symbol']} {timeframe} bars"
        payload = await with_retries(self.name, what, lambda: self._get(params), self._options)
        return _parse(payload, f"alphavantage {params['symbol']} {timeframe}", timeframe)

    async def _get(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            response = await self._client.get(self._url, params=params)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"cannot connect ({type(exc).__name__}: {exc})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise DataError(
                f"alphavantage answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            payload = response.json()
        except ValueError:
            raise DataError(
                f"alphavantage answered something not JSON: {response.text[:200]!r}"
            ) from None
        return _checked_payload(payload)


def _checked_payload(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DataError("alphavantage answered JSON that is not an object")
    for key in _LIMITED:
        if key in payload:
            raise RetryableError(f"rate limited ({key}: {payload[key]})")
    if "Error Message" in payload:
        raise DataError(f"alphavantage refused the request: {payload['Error Message']}")
    return payload


def _parse(payload: dict[str, Any], source: str, timeframe: Timeframe) -> pd.DataFrame:
    """The bar frame of a time series answer, oldest first (Alpha Vantage sends newest first)."""
    key = next((k for k in payload if k.startswith("Time Series")), None)
    series = payload.get(key) if key else None
    if not isinstance(series, dict):
        raise DataError(f"{source}: the answer has no time series (keys: {', '.join(payload)})")
    if not series:
        return empty_bars()
    meta = payload.get("Meta Data") or {}
    zone = next((str(v) for k, v in meta.items() if k.endswith("Time Zone")), "US/Eastern")
    try:
        local = pd.DatetimeIndex(pd.to_datetime(list(series), format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: a bar time is not a date ({exc})") from None
    times = local.tz_localize("UTC") if str(timeframe) == "1d" else local.tz_localize(zone)
    order = times.argsort()
    rows = [[_field(bar, name) for name in _FIELDS] for bar in series.values()]
    values = [rows[i] for i in order]
    return bar_frame(times[order].tz_convert("UTC"), values, source=source, timeframe=timeframe)


def _month(stamp: pd.Timestamp) -> pd.Period:
    """The month ``stamp`` falls in, on the US/Eastern calendar Alpha Vantage keeps."""
    return stamp.tz_convert("US/Eastern").tz_localize(None).to_period("M")


def _field(bar: Any, name: str) -> float:
    try:
        return float(bar[name])
    except (TypeError, ValueError, KeyError):
        return float("nan")
