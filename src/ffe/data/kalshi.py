"""Kalshi market data: candlesticks of a binary market as bars, and its settlement.

``KalshiSource`` is a ``LiveFeed`` over Kalshi's public market data (no key needed): a
market's candlesticks (1 minute, 1 hour or 1 day) become bars whose prices are YES prices in
[0, 1]. A bar's prices are the traded YES prices of its period; a period without trades
takes the midpoint of the best YES bid and ask instead (volume 0). A bar's time is the start
of its period; only closed periods are returned. A market Kalshi has archived (settled before
its historical cutoff) is read from the historical endpoints instead.

``record_market`` pages through a market's history into the data catalog and stores what the
backtest needs to settle it beside the bars: ``<data dir>/contracts/<ticker>.json`` holds the
market's event, close time, status and result (see ``load_contract``).
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import pandas as pd

from ffe.data.catalog import DataCatalog, ImportSummary
from ffe.data.feed import FeedUnavailableError
from ffe.data.source import BAR_COLUMNS
from ffe.data.validate import validate_bars
from ffe.domain import DataError, Timeframe
from ffe.domain.contracts import RESULTS, BinaryContract

PUBLIC_URL: Final = "https://api.elections.kalshi.com/trade-api/v2"  # market data is public
PERIODS: Final = {"1m": 1, "1h": 60, "1d": 1440}  # our timeframe -> Kalshi's period_interval
_MAX_RETRY_AFTER_S = 60.0

Json = dict[str, Any]


class KalshiSource:
    """Closed bars of Kalshi markets (symbols are market tickers), from the public API."""

    name = "kalshi"

    def __init__(
        self,
        base_url: str = PUBLIC_URL,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        page_bars: int = 5000,
    ) -> None:
        """``base_url`` is a trade API v2 address (a local server in tests). Requests are
        retried ``max_retries`` times on 429, 5xx and network errors, after ``backoff_s``
        doubling (or the server's Retry-After); ``page_bars`` bounds one request's span."""
        self._url = base_url.rstrip("/")
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._page_bars = page_bars
        self._series: dict[str, str] = {}
        self._historical: set[str] = set()  # markets served by the historical endpoints
        self._client = httpx.AsyncClient(timeout=timeout_s)

    @property
    def base_url(self) -> str:
        return self._url

    @property
    def page_bars(self) -> int:
        """The most bars one ``fetch`` spans."""
        return self._page_bars

    async def venue_time(self) -> pd.Timestamp:
        """Kalshi's clock, from the Date header of its exchange status."""
        response = await self._request("/exchange/status", {})
        try:
            return pd.Timestamp(response.headers["Date"]).tz_convert("UTC")
        except (KeyError, ValueError) as exc:
            raise DataError(f"Kalshi's answer carries no usable Date header ({exc})") from None

    async def contract(self, symbol: str) -> BinaryContract:
        """The market's event, close time, status and (once determined) result."""
        return _contract(await self._market(symbol), symbol)

    async def fetch(
        self,
        symbol: str,
        timeframe: Timeframe,
        since: pd.Timestamp | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        period = _period(timeframe)
        now = await self.venue_time()
        market = await self._market(symbol)
        start = since if since is not None else _time(market.get("open_time")) or now
        span = timeframe.seconds * (limit or self._page_bars)
        end = min(now, pd.Timestamp(start) + pd.Timedelta(seconds=span))
        params = {
            "start_ts": int(pd.Timestamp(start).timestamp()),
            "end_ts": int(end.timestamp()),
            "period_interval": period,
        }
        path = await self._candles_path(symbol, market)
        candles = (await self._json(path, params)).get("candlesticks") or []
        frame = _bars(candles, timeframe, now, symbol)
        if since is not None:
            frame = frame[frame.index >= pd.Timestamp(since)]
        return frame.iloc[:limit] if limit else frame

    async def close(self) -> None:
        await self._client.aclose()

    # --- HTTP -------------------------------------------------------------------------------

    async def _market(self, symbol: str) -> Json:
        """The market, from the live data set or, once Kalshi has archived it (settled before
        its historical cutoff), from the historical one."""
        quoted = quote(symbol, safe="")
        for prefix in ("", "/historical"):
            response = await self._request(f"{prefix}/markets/{quoted}", {})
            if response.status_code == 404:
                continue
            market = _object(response, f"GET {prefix}/markets/{symbol}").get("market")
            if not isinstance(market, dict):
                raise DataError(f"Kalshi's answer about market {symbol} holds no market")
            if prefix:
                self._historical.add(symbol)
            return market
        raise DataError(f"Kalshi has no market {symbol!r}, live or historical: check the ticker")

    async def _candles_path(self, symbol: str, market: Json) -> str:
        quoted = quote(symbol, safe="")
        if symbol in self._historical:
            return f"/historical/markets/{quoted}/candlesticks"
        if symbol not in self._series:
            event = str(market.get("event_ticker") or "")
            if not event:
                raise DataError(f"Kalshi's market {symbol} names no event_ticker")
            found = (await self._json(f"/events/{quote(event, safe='')}", {})).get("event")
            if not isinstance(found, dict) or not found.get("series_ticker"):
                raise DataError(f"Kalshi's event {event} names no series_ticker")
            self._series[symbol] = str(found["series_ticker"])
        return f"/series/{quote(self._series[symbol], safe='')}/markets/{quoted}/candlesticks"

    async def _json(self, path: str, params: Json) -> Json:
        response = await self._request(path, params)
        if response.status_code == 404:
            raise DataError(f"Kalshi has no {path}: check the market ticker")
        return _object(response, f"GET {path}")

    async def _request(self, path: str, params: Json) -> httpx.Response:
        for attempt in range(self._max_retries + 1):
            try:
                response = await self._client.get(self._url + path, params=params)
            except httpx.HTTPError as exc:
                failure, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                failure, wait = f"HTTP {response.status_code}", _retry_after(response)
            if attempt < self._max_retries:
                await asyncio.sleep(wait if wait is not None else self._backoff_s * 2**attempt)
        raise FeedUnavailableError(
            f"Kalshi GET {path} failed {self._max_retries + 1} times (last: {failure}); "
            "try again later"
        )


@dataclass(frozen=True, slots=True)
class RecordedMarket:
    """What ``record_market`` stored: the bars' import summary and the contract."""

    bars: ImportSummary
    contract: BinaryContract

    def __str__(self) -> str:
        state = f"settled {self.contract.result}" if self.contract.settled else "not settled"
        return f"{self.bars}; event {self.contract.event}, {state}"


async def record_market(
    catalog: DataCatalog,
    source: KalshiSource,
    symbol: str,
    timeframe: Timeframe | str = "1h",
    *,
    since: pd.Timestamp | None = None,
    replace: bool = False,
) -> RecordedMarket:
    """Fetch every closed bar of the market ``symbol`` from ``since`` (its opening when None)
    into the catalog, and store its contract (event, close time, result) beside the bars."""
    if isinstance(timeframe, str):
        timeframe = Timeframe.parse(timeframe)
    contract = await source.contract(symbol)
    now = await source.venue_time()
    end = min(now, contract.expiry) if contract.expiry is not None else now
    step = pd.Timedelta(seconds=timeframe.seconds)
    frames, cursor = [], since
    while cursor is None or cursor < end:  # no bar starts after the market closes
        frame = await source.fetch(symbol, timeframe, cursor)
        if frame.empty:
            if cursor is None:
                break
            cursor += step * source.page_bars  # a quiet span: look past it
            continue
        frames.append(frame)
        cursor = frame.index[-1] + step
    if not frames:
        raise DataError(f"Kalshi has no closed {timeframe} bars of {symbol} to record")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{quote(symbol, safe='')}.parquet"
        pd.concat(frames).to_parquet(path)
        summary = catalog.import_file(path, symbol, timeframe, replace=replace)
    _write_contract(catalog.bars_dir.parent / "contracts", contract)
    return RecordedMarket(summary, contract)


def load_contract(data_dir: Path, symbol: str) -> BinaryContract | None:
    """The contract ``record_market`` stored for ``symbol`` under ``data_dir``, or None."""
    path = data_dir / "contracts" / f"{quote(symbol, safe='')}.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        expiry = datetime.fromisoformat(raw["expiry"]) if raw.get("expiry") else None
        return BinaryContract(raw["symbol"], raw["event"], expiry, raw["status"], raw["result"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"not a contract record ({exc!r}): record the market again", path=str(path)
        ) from None


def _write_contract(directory: Path, contract: BinaryContract) -> None:
    record = {
        "symbol": contract.symbol,
        "event": contract.event,
        "expiry": contract.expiry.isoformat() if contract.expiry else None,
        "status": contract.status,
        "result": contract.result,
    }
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{quote(contract.symbol, safe='')}.json"
    temp = target.with_suffix(".tmp")
    temp.write_text(json.dumps(record, indent=1))
    temp.replace(target)


# --- answers ----------------------------------------------------------------------------------


def _object(response: httpx.Response, what: str) -> Json:
    """The JSON object of a successful answer; DataError for any other."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.is_success or not isinstance(body, dict):
        raise DataError(
            f"Kalshi answered {what} with HTTP {response.status_code}: {response.text[:200]!r}"
        )
    return body


def _period(timeframe: Timeframe) -> int:
    period = PERIODS.get(str(timeframe))
    if period is None:
        raise DataError(f"Kalshi has candlesticks of 1m, 1h and 1d, not {timeframe}: pick one")
    return period


def _contract(raw: Json, symbol: str) -> BinaryContract:
    try:
        result = str(raw.get("result") or "") or None
        if result is not None and result not in RESULTS:
            raise ValueError(f"result {result!r}")
        status = str(raw["status"])
        return BinaryContract(
            str(raw["ticker"]),
            str(raw["event_ticker"]),
            _time(raw.get("close_time")),
            status,
            result,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"Kalshi's market {symbol} is not shaped as expected ({exc})") from None


def _time(text: object) -> pd.Timestamp | None:
    return pd.Timestamp(str(text)).tz_convert("UTC") if text else None


def _bars(
    candles: list[Json], timeframe: Timeframe, now: pd.Timestamp, symbol: str
) -> pd.DataFrame:
    rows, times = [], []
    for candle in candles:
        try:
            end = pd.Timestamp(int(candle["end_period_ts"]), unit="s", tz="UTC")
            if end > now:
                continue  # still forming
            row = _ohlcv(candle)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Kalshi's candlestick of {symbol} is malformed ({exc})") from None
        if row is not None:
            times.append(end - pd.Timedelta(seconds=timeframe.seconds))
            rows.append(row)
    index = pd.DatetimeIndex(times, name="time", dtype="datetime64[ns, UTC]")
    frame = pd.DataFrame(rows, index=index, columns=list(BAR_COLUMNS), dtype="float64")
    if frame.empty:  # nothing closed yet: an empty frame, which validation would refuse
        return frame
    return validate_bars(frame, source=f"kalshi:{symbol}", timeframe=timeframe)


def _ohlcv(candle: Json) -> list[float] | None:
    """Traded YES prices in [0, 1], else the bid/ask midpoint; None when neither exists."""
    price = candle.get("price") or {}
    volume = float(candle.get("volume_fp") or candle.get("volume") or 0)
    traded = [_dollars(price, key) for key in ("open", "high", "low", "close")]
    if all(value is not None for value in traded):
        return [*traded, volume]  # type: ignore[list-item]
    bid, ask = candle.get("yes_bid") or {}, candle.get("yes_ask") or {}
    mids = []
    for key in ("open", "high", "low", "close"):
        low, high = _dollars(bid, key), _dollars(ask, key)
        if low is None or high is None:
            return None
        mids.append((low + high) / 2)
    return [mids[0], max(mids), min(mids), mids[3], 0.0]


def _dollars(raw: Json, key: str) -> float | None:
    """A price in dollars: ``<key>_dollars``; else ``<key>``, a dollar string in the
    historical data set and cents (a number) in the live one; None when absent."""
    dollars = raw.get(f"{key}_dollars")
    if dollars not in (None, ""):
        return float(dollars)
    value = raw.get(key)
    if value is None or value == "":
        return None
    return float(value) if isinstance(value, str) else float(value) / 100.0


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None
