"""A local stand-in for Binance's public spot market data REST API, for the ccxt feed: real
HTTP on 127.0.0.1 (ephemeral port), in a background thread. (The broker's tests have their own
fake of the private trading API: ``tests/integration/brokers/fake_binance.py``.)

Endpoints: ``GET /api/v3/exchangeInfo`` (spot markets), ``GET /api/v3/time``,
``GET /api/v3/klines`` (``symbol``, ``interval``, ``startTime``, ``endTime``, ``limit``: 500
by default, 1000 at most, as Binance pages). Point ccxt at it with the URL ``fake.api_url``
(``http://127.0.0.1:PORT/api/v3``), e.g. ``ffe data fetch --source ccxt:binance --api-url``.

Bars come from ``tests.support.venue.SeededSeries``, one per symbol and interval, opening
every interval from ``origin_ms``; the same seed gives the same bars. The venue's clock is a
``VenueClock``:

- Standing (``VenueClock(start_ms)``): bars exist up to the clock; the test moves it
  (``clock.advance(3600)``), and the bar that opened last is still forming (Binance sends it).
- Live (``FakeBinanceFeed(clock=VenueClock())``, the default): the clock is real time, so
  with ``origin_ms`` near now and ``1s`` bars, a new candle closes every second, and
  ``/api/v3/time`` says the real time: a live 1-second feed for an end-to-end agent test.

Tests script faults for the next requests to a path (``fail``): "429" (with Retry-After),
"500", "hang" (no answer until the client times out) or "garbage" (200, not JSON); and cut
bars out of a series (``series(...).gaps``), corrupt them (``.corrupt``) or send them twice
(``.duplicate``). ``requests`` logs every request with its parameters. While ``down`` is
true every request is answered 503 "Service Unavailable", as by a load balancer in front of a
venue that is out (a live agent's outage).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.venue import SeededSeries, VenueClock

ORIGIN_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MARKETS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}
INTERVALS = {"1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
             "2h": 7200, "4h": 14_400, "6h": 21_600, "8h": 28_800, "12h": 43_200,
             "1d": 86_400, "3d": 259_200, "1w": 604_800}  # fmt: skip


@dataclass
class Fault:
    """The next ``times`` requests to ``path`` fail as ``kind``: 429, 500, hang, garbage;
    after ``after`` requests to it are answered as usual."""

    path: str
    kind: str
    times: int = 1
    retry_after: str | None = None
    after: int = 0


class _ReplyError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class FakeBinanceFeed:
    """The venue's bars, clock, fault script and request log; ``start`` it first."""

    def __init__(
        self, clock: VenueClock | None = None, origin_ms: int = ORIGIN_MS, seed: int = 7
    ) -> None:
        self.clock = clock or VenueClock()
        self.origin_ms, self.seed = origin_ms, seed
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hang_s = 2.0
        self.down = False
        self._series: dict[tuple[str, str], SeededSeries] = {}
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- test controls ------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """The URL to give ccxt's Binance as its public API (it ends in /api/v3)."""
        return f"{self.url}/api/v3"

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self.api_url

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def series(self, symbol: str = "BTCUSDT", interval: str = "1h") -> SeededSeries:
        """The bars of ``symbol`` at ``interval`` (made on first use), to cut or corrupt."""
        with self._lock:
            key = (symbol, interval)
            if key not in self._series:
                step = INTERVALS[interval]
                origin = self.origin_ms - self.origin_ms % (step * 1000)
                self._series[key] = SeededSeries(origin, step, seed=self.seed)
            return self._series[key]

    def fail(
        self, path: str, kind: str, times: int = 1, retry_after: str | None = None, after: int = 0
    ) -> None:
        with self._lock:
            self._faults.append(Fault(path, kind, times, retry_after, after))

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.requests if p == path)

    def klines_asked(self) -> list[dict[str, str]]:
        with self._lock:
            return [params for path, params in self.requests if path == "/api/v3/klines"]

    # -- requests -----------------------------------------------------------------------

    def handle(self, path: str, params: dict[str, str]) -> Any:
        with self._lock:
            self.requests.append((path, params))
            if self.down:
                raise _ReplyError(503, "Service Unavailable")
            fault = next((f for f in self._faults if f.path == path and f.times > 0), None)
            if fault is not None and fault.after > 0:
                fault.after, fault = fault.after - 1, None
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            self._play(fault)
        with self._lock:
            if path == "/api/v3/exchangeInfo":
                return _exchange_info(self.clock.now_ms())
            if path == "/api/v3/time":
                return {"serverTime": self.clock.now_ms()}
            if path == "/api/v3/klines":
                return self._klines(params)
        raise _ReplyError(404, {"code": -1000, "msg": f"no route {path}"})

    def _play(self, fault: Fault) -> None:
        if fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            raise _ReplyError(429, {"code": -1003, "msg": "Too many requests."}, headers)
        if fault.kind == "500":
            raise _ReplyError(500, {"code": -1000, "msg": "An unknown error occurred."})
        if fault.kind == "hang":
            self._released.wait(self.hang_s)
            raise ConnectionAbortedError("hung past the client's timeout")
        if fault.kind == "garbage":
            raise _ReplyError(200, "<html>maintenance</html>")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        symbol, interval = params.get("symbol", ""), params.get("interval", "")
        if symbol not in MARKETS:
            raise _ReplyError(400, {"code": -1121, "msg": "Invalid symbol."})
        if interval not in INTERVALS:
            raise _ReplyError(400, {"code": -1120, "msg": "Invalid interval."})
        limit = int(params.get("limit", 500))
        if not 0 < limit <= 1000:
            raise _ReplyError(400, {"code": -1130, "msg": "Invalid limit."})
        series, now = self.series(symbol, interval), self.clock.now_ms()
        if "startTime" in params:
            end = int(params.get("endTime", now))
            rows = series.bars(int(params["startTime"]), end, now, limit)
        else:
            rows = series.latest(limit, min(now, int(params.get("endTime", now))))
        return [_kline(row, series.step_ms) for row in rows]


def _kline(bar: tuple[Any, ...], step_ms: int) -> list[Any]:
    opened, *prices, volume = bar
    text = [p if isinstance(p, str) else f"{p:.8f}" for p in prices]
    return [opened, *text, f"{volume}", opened + step_ms - 1, "0", 10, "0", "0", "0"]


def _exchange_info(now_ms: int) -> dict[str, Any]:
    symbols = [_market(symbol, base, quote) for symbol, (base, quote) in MARKETS.items()]
    return {"timezone": "UTC", "serverTime": now_ms, "rateLimits": [], "symbols": symbols}


def _market(symbol: str, base: str, quote: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00",
             "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000",
             "stepSize": "0.00001"},
        ],
    }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBinanceFeed
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body, status, headers = self.fake.handle(url.path, params), 200, {}
        except _ReplyError as reply:
            body, status, headers = reply.body, reply.status, reply.headers
        except ConnectionAbortedError:
            self.close_connection = True  # answer nothing: the client has given up
            return
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``fake.requests``."""
