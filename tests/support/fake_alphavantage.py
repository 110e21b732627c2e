"""A local stand-in for Alpha Vantage's query API: real HTTP on 127.0.0.1 (ephemeral port).

``GET /query`` with ``function=TIME_SERIES_DAILY`` or ``TIME_SERIES_INTRADAY`` (``interval``
1min..60min, ``month=YYYY-MM``), ``symbol``, ``outputsize`` (``compact``: the latest 100
bars; ``full``: all, or the whole ``month``) and ``apikey`` (checked). It answers as Alpha
Vantage does: JSON with "Meta Data" and "Time Series (...)", newest first; intraday times in
US/Eastern, daily ones as dates; the bar still forming is included (the day so far).

Bars come from ``tests.support.venue.SeededSeries`` (one per symbol and interval, every
interval from ``origin_ms``, around the clock; no market hours), up to a ``VenueClock``
(standing, moved by the test; or real time). Tests script the next answers (``fail``):
"note" and "information" (HTTP 200 with the over-limit body, as Alpha Vantage sends),
"error" (200 with "Error Message"), "500", "hang"; ``requests`` logs every query.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
from tests.support.venue import SeededSeries, VenueClock

API_KEY = "test-av-key"
ORIGIN_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
INTERVALS = {"1min": 60, "5min": 300, "15min": 900, "30min": 1800, "60min": 3600}
EASTERN = ZoneInfo("US/Eastern")
NOTE = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans to instantly remove all daily rate limits."
)
_CANNED = {
    "note": (200, {"Note": NOTE}),
    "information": (200, {"Information": NOTE}),
    "error": (200, {"Error Message": "Invalid API call. Please retry or visit the documentation."}),
    "500": (500, {"error": "internal"}),
}


class FakeAlphaVantage:
    """The venue's bars, clock, scripted answers and request log; ``start`` it first."""

    def __init__(self, clock: VenueClock | None = None, origin_ms: int = ORIGIN_MS) -> None:
        self.clock = clock or VenueClock()
        self.origin_ms = origin_ms
        self.requests: list[dict[str, str]] = []
        self.hang_s = 2.0
        self._series: dict[tuple[str, str], SeededSeries] = {}
        self._script: deque[str] = deque()
        self._lock = threading.RLock()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The query endpoint, as ``data.alpha_vantage_url`` or ``--api-url`` name it."""
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/query"

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self.url

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail(self, *kinds: str) -> None:
        """Answer the next requests as ``kinds`` say, one each (then normally again)."""
        with self._lock:
            self._script.extend(kinds)

    def series(self, symbol: str = "IBM", interval: str = "daily") -> SeededSeries:
        with self._lock:
            key = (symbol, interval)
            if key not in self._series:
                step = INTERVALS.get(interval, 86_400)
                self._series[key] = SeededSeries(self.origin_ms, step, seed=11, price=150.0)
            return self._series[key]

    def handle(self, params: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(params)
            kind = self._script.popleft() if self._script else None
        if kind == "hang":
            self._released.wait(self.hang_s)
            raise ConnectionAbortedError("hung past the client's timeout")
        if kind is not None:
            return _CANNED[kind]
        if params.get("apikey") != API_KEY:
            return 200, {"Error Message": "the parameter apikey is invalid or missing."}
        with self._lock:
            return 200, self._answer(params)

    def _answer(self, params: dict[str, str]) -> dict[str, Any]:
        function, symbol = params.get("function"), params.get("symbol", "")
        if function == "TIME_SERIES_DAILY":
            interval, zone_key = "daily", "5. Time Zone"
        elif function == "TIME_SERIES_INTRADAY" and params.get("interval") in INTERVALS:
            interval, zone_key = params["interval"], "6. Time Zone"
        else:
            return {"Error Message": "Invalid API call."}
        series, now = self.series(symbol, interval), self.clock.now_ms()
        compact = params.get("outputsize", "compact") == "compact"
        if "month" in params:
            first = pd.Timestamp(params["month"], tz=EASTERN)
            bounds = (first, first + pd.offsets.MonthBegin(1) - pd.Timedelta(1, "ms"))
            start, end = (int(b.tz_convert("UTC").value // 1_000_000) for b in bounds)
            rows = series.bars(start, end, now)
            rows = rows[-100:] if compact else rows
        else:
            rows = series.latest(100, now) if compact else series.bars(series.origin_ms, now, now)
        key = "Time Series (Daily)" if interval == "daily" else f"Time Series ({interval})"
        bars = {_local(r[0], interval): _fields(r) for r in reversed(rows)}
        return {"Meta Data": {"1. Information": "prices", "2. Symbol": symbol,
                              zone_key: "US/Eastern"}, key: bars}  # fmt: skip


def _local(ms: int, interval: str) -> str:
    stamp = pd.Timestamp(ms, unit="ms", tz="UTC")
    if interval == "daily":
        return stamp.strftime("%Y-%m-%d")
    return stamp.tz_convert(EASTERN).strftime("%Y-%m-%d %H:%M:%S")


def _fields(bar: tuple[Any, ...]) -> dict[str, str]:
    names = ("1. open", "2. high", "3. low", "4. close", "5. volume")
    return {n: v if isinstance(v, str) else f"{v:.4f}" for n, v in zip(names, bar[1:], strict=True)}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAlphaVantage
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/query":
            status, body = 404, {"error": "no such path"}
        else:
            try:
                status, body = self.fake.handle(dict(parse_qsl(url.query)))
            except ConnectionAbortedError:
                self.close_connection = True
                return
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``fake.requests``."""
