"""Candles of OANDA's v20 REST API (``oanda``): ``GET /v3/instruments/{instrument}/candles``,
mid prices, complete candles only, with an API token (practice or live).

Instruments are OANDA's (``EUR_USD``); ``EUR/USD`` is read as ``EUR_USD``. Daily candles are
aligned to midnight UTC and weekly ones to Monday, so they line up with the other sources. The
venue's time is the ``Date`` header of its answers.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

from ffe.data.feeds._common import (
    FeedOptions,
    RetryableError,
    bar_frame,
    closed_bars,
    retry_after,
    utc,
    with_retries,
)
from ffe.domain import ConfigError, DataError, Timeframe

PRACTICE_URL = "https://api-fxpractice.oanda.com"
MAX_COUNT = 5000  # the most candles one request may ask for
DEFAULT_COUNT = 500  # what OANDA answers without a count
GRANULARITIES = {
    **{f"{n}s": f"S{n}" for n in (5, 10, 15, 30)},
    **{f"{n}m": f"M{n}" for n in (1, 2, 4, 5, 10, 15, 30)},
    **{f"{n}h": f"H{n}" for n in (1, 2, 3, 4, 6, 8, 12)},
    "1d": "D",
    "1w": "W",
}
_ALIGN = {
    "D": {"dailyAlignment": "0", "alignmentTimezone": "UTC"},
    "W": {"weeklyAlignment": "Monday"},
}


class OandaFeed:
    """Closed mid-price candles of OANDA instruments."""

    name = "oanda"

    def __init__(self, options: FeedOptions) -> None:
        if not options.api_key:
            raise ConfigError(
                "oanda needs an API token: set data.oanda_token (or agent.oanda_token)"
            )
        self._options = options
        self._client = httpx.AsyncClient(
            base_url=(options.api_url or PRACTICE_URL).rstrip("/"),
            timeout=options.timeout_s,
            headers={
                "Authorization": f"Bearer {options.api_key}",
                "Accept-Datetime-Format": "RFC3339",
            },
        )

    async def venue_time(self) -> pd.Timestamp:
        _, now = await self._get("ask the time", "/v3/accounts", {})
        return now

    async def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        since: pd.Timestamp | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        granularity = GRANULARITIES.get(str(timeframe))
        if granularity is None:
            raise DataError(
                f"oanda has no {timeframe} candles: use one of {', '.join(GRANULARITIES)}"
            )
        instrument = symbol.replace("/", "_")
        params = {"price": "M", "granularity": granularity, **_ALIGN.get(granularity, {})}
        params["count"] = str(min(limit or DEFAULT_COUNT, MAX_COUNT))
        since = None if since is None else utc(since)
        if since is not None:
            params["from"] = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = f"/v3/instruments/{quote(instrument, safe='')}/candles"
        payload, now = await self._get(f"fetch {instrument} {timeframe} candles", path, params)
        frame = _parse(payload, f"oanda {instrument} {timeframe}", timeframe)
        return closed_bars(frame, timeframe, now, since)

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(
        self, what: str, path: str, params: dict[str, str]
    ) -> tuple[dict[str, Any], pd.Timestamp]:
        async def once() -> tuple[dict[str, Any], pd.Timestamp]:
            try:
                response = await self._client.get(path, params=params)
            except httpx.TimeoutException as exc:
                raise RetryableError(f"timed out ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise RetryableError(f"cannot connect ({type(exc).__name__}: {exc})") from None
            return _answer(response), _date(response)

        return await with_retries(self.name, what, once, self._options)


def _answer(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if status == 429 or status >= 500:
        raise RetryableError(f"HTTP {status}", retry_after(response.headers))
    try:
        payload = response.json()
    except ValueError:
        raise DataError(f"oanda answered something not JSON (HTTP {status})") from None
    message = payload.get("errorMessage", "") if isinstance(payload, dict) else ""
    if status in (401, 403):
        raise ConfigError(
            f"oanda refused the token (HTTP {status}: {message}): check data.oanda_token"
        )
    if status != 200 or not isinstance(payload, dict):
        raise DataError(f"oanda refused the request (HTTP {status}): {message}")
    return payload


def _date(response: httpx.Response) -> pd.Timestamp:
    """The venue's clock: the answer's Date header (this machine's clock without one)."""
    header = response.headers.get("date")
    if header:
        try:
            return pd.Timestamp(parsedate_to_datetime(header)).tz_convert("UTC")
        except (TypeError, ValueError):
            pass
    return pd.Timestamp.now(tz="UTC")


def _parse(payload: dict[str, Any], source: str, timeframe: Timeframe) -> pd.DataFrame:
    candles = payload.get("candles")
    if not isinstance(candles, list):
        raise DataError(f"{source}: the answer has no candles list")
    complete = [c for c in candles if isinstance(c, dict) and c.get("complete") is True]
    try:
        times = pd.DatetimeIndex(
            pd.to_datetime([c["time"] for c in complete], utc=True, format="ISO8601")
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{source}: a candle has no valid time ({exc})") from None
    values = [[*(_price(c, key) for key in "ohlc"), _number(c.get("volume"))] for c in complete]
    return bar_frame(times, values, source=source, timeframe=timeframe)


def _price(candle: dict[str, Any], key: str) -> float:
    mid = candle.get("mid")
    return _number(mid.get(key)) if isinstance(mid, dict) else float("nan")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
