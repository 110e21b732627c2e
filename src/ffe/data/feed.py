"""The ``LiveFeed`` port: bars from a venue's public REST API, fetched as they close.

A ``BarSource`` hands out bars already on disk; a live feed asks a venue (a ccxt exchange,
Alpha Vantage, OANDA, Kalshi) for them. ``ffe data fetch`` pages through one to fill the
catalog, and the agent's live clock asks one for each bar as it closes.

Every feed keeps one contract:

- Frames are bar frames (``ffe.data.source``): UTC ``time`` index, float64 OHLCV, validated.
- ``fetch`` returns only **closed** bars: a bar is closed once ``time + timeframe`` is not
  after the venue's clock. The bar still forming is never returned.
- Times are the venue's, and ``venue_time`` is the venue's clock (the agent waits for a bar
  to close by it, not by the machine's clock).
- A feed that cannot answer raises ``FeedUnavailableError`` (outage, timeout, rate limit after its
  retries); a feed that answers nonsense raises ``DataError`` (what to fix in the message).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from ffe.domain import DataError, Timeframe


class FeedUnavailableError(DataError):
    """The venue did not answer usefully (down, timing out, or rate limiting) after retries.

    Callers treat it as an outage: keep what they have and ask again later."""


@runtime_checkable
class LiveFeed(Protocol):
    """Closed bars of one venue, asked for by symbol, timeframe and start time."""

    @property
    def name(self) -> str:
        """The feed's name as ``--source``/``--feed`` spell it, like ``ccxt:binance``."""
        ...

    async def venue_time(self) -> pd.Timestamp:
        """The venue's clock now (tz-aware UTC)."""
        ...

    async def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        since: pd.Timestamp | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Closed bars of ``symbol`` from ``since`` (inclusive; the earliest the venue has
        when None), at most ``limit`` of them (the venue's page size when None), validated.
        An empty frame when there are none yet."""
        ...

    async def close(self) -> None:
        """Release the feed's connections."""
        ...
