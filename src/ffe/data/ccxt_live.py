"""A minimal ``LiveFeed`` over ccxt's public market data, for ``ffe agent run --feed ccxt:ID``.

A stand-in until the feeds of issue 20's first item (``ffe.data.feeds``, with Alpha Vantage
and OANDA beside ccxt) are merged: the agent's live clock needs only this protocol, and
``ffe.bootstrap`` is the one place that names this module.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from ffe.data.feed import FeedUnavailableError
from ffe.domain import DataError, Timeframe

_COLUMNS = ["open", "high", "low", "close", "volume"]


class CcxtLiveFeed:
    """Closed bars and the clock of one ccxt exchange (public endpoints only)."""

    def __init__(self, exchange: str, *, base_url: str | None = None, timeout_s: float = 10.0):
        import ccxt.async_support as ccxt_async

        factory = getattr(ccxt_async, exchange, None)
        if factory is None:
            raise DataError(f"ccxt has no exchange {exchange!r}: see ccxt.exchanges for the ids")
        options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}
        self._exchange: Any = factory(
            {"enableRateLimit": True, "timeout": int(timeout_s * 1000), "options": options}
        )
        if base_url is not None:
            self._exchange.urls["api"]["public"] = base_url.rstrip("/")
        self._ccxt = ccxt_async
        self.name = f"ccxt:{exchange}"
        self._offset_ms = 0.0  # the venue's clock minus this machine's, as last measured

    async def venue_time(self) -> pd.Timestamp:
        millis = await self._call(self._exchange.fetch_time)
        self._offset_ms = float(millis) - time.time() * 1000
        return pd.Timestamp(int(millis), unit="ms", tz="UTC")

    async def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        since: pd.Timestamp | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        start = None if since is None else int(since.value // 1_000_000)
        rows = await self._call(self._exchange.fetch_ohlcv, symbol, str(timeframe), start, limit)
        now_ms = time.time() * 1000 + self._offset_ms
        step_ms = timeframe.seconds * 1000
        closed = [row for row in rows if row[0] + step_ms <= now_ms]
        index = pd.DatetimeIndex(
            pd.to_datetime([row[0] for row in closed], unit="ms", utc=True), name="time"
        )
        values = [[float(x) for x in row[1:6]] for row in closed]
        return pd.DataFrame(values, index=index, columns=_COLUMNS, dtype="float64")

    async def close(self) -> None:
        await self._exchange.close()

    async def _call(self, method: Any, *args: Any) -> Any:
        ccxt_async = self._ccxt
        try:
            if not self._exchange.markets:
                await self._exchange.load_markets()
            return await method(*args)
        except ccxt_async.BadSymbol as exc:
            raise DataError(f"{self.name}: {exc}") from None
        except (ccxt_async.NetworkError, ccxt_async.ExchangeNotAvailable) as exc:
            raise FeedUnavailableError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        except ccxt_async.ExchangeError as exc:
            raise FeedUnavailableError(f"{self.name}: {type(exc).__name__}: {exc}") from None


def open_feed(name: str, *, base_url: str | None = None) -> CcxtLiveFeed:
    """The feed ``name`` spells (``ccxt:binance``); only ccxt exchanges in this stand-in."""
    kind, _, exchange = name.partition(":")
    if kind != "ccxt" or not exchange:
        raise DataError(
            f"unknown feed {name!r}: use ccxt:EXCHANGE, like ccxt:binance (Alpha Vantage and "
            "OANDA feeds come with ffe.data.feeds)"
        )
    return CcxtLiveFeed(exchange, base_url=base_url)
