"""Candles of any exchange ccxt knows (``ccxt:binance``, ``ccxt:coinbase``, ...), public
endpoints only: no keys.

ccxt's rate limiter is on. Rate limits, 5xx answers, timeouts and lost connections are asked
again with exponential backoff (the venue's Retry-After when it sends one), then become
FeedUnavailableError. Only spot markets are loaded. ``api_url`` replaces the exchange's public
REST base: ccxt's ``urls['api']['public']`` (Binance: the URL ending in ``/api/v3``), else
``urls['api']['rest']`` (Coinbase: ``https://api.coinbase.com``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import pandas as pd
from ccxt.base import errors as ccxt_errors

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

T = TypeVar("T")

# Spot only: Binance otherwise loads futures and margin markets from other hosts, and asks a
# private endpoint for currencies.
_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "defaultType": "spot",
    },
}
# The most candles one request returns, where ccxt's default (the exchange's) is smaller.
PAGE_SIZES = {"binance": 1000, "coinbase": 300, "kraken": 720}


class CcxtFeed:
    """Closed candles of one ccxt exchange's spot markets."""

    def __init__(self, exchange_id: str, options: FeedOptions) -> None:
        if exchange_id not in ccxt_async.exchanges:
            raise ConfigError(
                f"ccxt has no exchange {exchange_id!r}: use one of ccxt.exchanges, "
                "like ccxt:binance or ccxt:coinbase"
            )
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": max(1, round(options.timeout_s * 1000)),
            "options": {"defaultType": "spot", **_OPTIONS.get(exchange_id, {})},
        }
        if options.rate_limit_ms is not None:
            config["rateLimit"] = options.rate_limit_ms
        self._exchange: Any = getattr(ccxt_async, exchange_id)(config)
        if options.api_url is not None:
            _rebase(self._exchange, exchange_id, options.api_url)
        self._id, self._options = exchange_id, options
        self._page = PAGE_SIZES.get(exchange_id)

    @property
    def name(self) -> str:
        return f"ccxt:{self._id}"

    async def venue_time(self) -> pd.Timestamp:
        if not self._exchange.has.get("fetchTime"):
            return pd.Timestamp.now(tz="UTC")
        millis = await self._call("ask the time", self._exchange.fetch_time)
        return pd.Timestamp(int(millis), unit="ms", tz="UTC")

    async def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        since: pd.Timestamp | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        code = await self._check(symbol, timeframe)
        since = None if since is None else utc(since)
        now = await self.venue_time()
        start = 0 if since is None else int(since.value // 1_000_000)
        rows: list[list[Any]] = []
        while limit is None or len(rows) < limit:
            want = self._page if limit is None else min(limit - len(rows), self._page or limit)
            page = await self._call(
                f"fetch {symbol} {timeframe} candles",
                partial(self._candles, symbol, code, start, want),
            )
            fresh = [row for row in page if int(row[0]) >= start]
            rows += fresh
            # done: one page asked for, nothing new (an exchange that ignores since), or now
            if limit is None or not fresh or int(page[-1][0]) + timeframe.seconds * 1000 > _ms(now):
                break
            start = int(page[-1][0]) + timeframe.seconds * 1000
        frame = self._frame(rows, symbol, timeframe)
        bars = closed_bars(frame, timeframe, now, since)
        return bars if limit is None else bars.iloc[:limit]

    async def close(self) -> None:
        await self._exchange.close()

    async def _check(self, symbol: str, timeframe: Timeframe) -> str:
        """The exchange's code for ``timeframe``; DataError if it lacks it or ``symbol``."""
        if not self._exchange.markets:
            await self._call("load markets", self._exchange.load_markets)
        if symbol not in self._exchange.markets:
            spot = sorted(self._exchange.markets)[:5]
            raise DataError(
                f"{self.name} has no spot market {symbol!r}: name one like "
                f"{', '.join(spot) or 'BTC/USDT'}"
            )
        code = str(timeframe)
        if code not in (self._exchange.timeframes or {}):
            known = ", ".join(self._exchange.timeframes or {}) or "none"
            raise DataError(f"{self.name} has no {code} candles: it offers {known}")
        return code

    async def _candles(self, symbol: str, code: str, start: int, limit: int | None) -> list[Any]:
        page: list[Any] = await self._exchange.fetch_ohlcv(symbol, code, start, limit)
        body = str(self._exchange.last_http_response or "").lstrip()
        if not page and not body.startswith(("[", "{")):  # ccxt reads a page of HTML as none
            raise RetryableError(f"answered something not JSON: {body[:80]!r}")
        return page

    def _frame(self, rows: list[list[Any]], symbol: str, timeframe: Timeframe) -> pd.DataFrame:
        times = pd.to_datetime([int(row[0]) for row in rows], unit="ms", utc=True)
        values = [[_number(value) for value in row[1:6]] for row in rows]
        return bar_frame(
            pd.DatetimeIndex(times), values, source=f"{self.name} {symbol} {timeframe}",
            timeframe=timeframe,
        )  # fmt: skip

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                return await call()
            # rate limits, timeouts, 5xx, refused connections, unreadable answers
            except ccxt_errors.OperationFailed as exc:
                headers = getattr(self._exchange, "last_response_headers", None)
                raise RetryableError(_reason(exc), retry_after(headers)) from None
            except ccxt_errors.BadSymbol as exc:
                raise DataError(f"{self.name}: {_reason(exc)}") from None
            except ccxt_errors.BaseError as exc:
                raise DataError(f"{self.name} refused to {what}: {_reason(exc)}") from None

        return await with_retries(self.name, what, once, self._options)


def _rebase(exchange: Any, exchange_id: str, url: str) -> None:
    """Point the exchange's public REST API at ``url``."""
    api = exchange.urls.get("api")
    if isinstance(api, str):
        exchange.urls["api"] = url
        return
    for key in ("public", "rest"):
        if isinstance(api, dict) and key in api:
            exchange.urls["api"] = {**api, key: url}
            return
    raise ConfigError(f"ccxt:{exchange_id} has no single public REST URL to replace with {url}")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
