"""A local Binance spot REST server in real time, for the live agent's tests: real HTTP on
127.0.0.1, speaking the part of ``/api/v3`` that ccxt's public market data uses (``time``,
``exchangeInfo``, ``klines``).

Its one symbol's 1-second bars are a seeded random walk (the same seed gives the same bars),
starting ``history_s`` seconds before the server started; the venue's clock is this machine's
real clock. ``klines`` answers like Binance: bars from ``startTime`` on, at most ``limit``, the
bar still forming included (with its final prices: clients must drop it themselves). Between
``down()`` and ``up()`` every request gets 503 (an outage).

A stand-in for ``tests/support/fake_binance.py`` (issue 20, item 1), which has a real-time
mode of its own: at merge, the end-to-end test can use either.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

SYMBOL, BASE, QUOTE = "BTCUSDT", "BTC", "USDT"


class LiveKlines:
    """Bars of ``BTC/USDT`` every ``step_ms``, from ``history_s`` before now to ``horizon_s``
    after; ``url`` is the ``/api/v3`` base once started."""

    def __init__(
        self, seed: int = 7, *, history_s: int = 900, horizon_s: int = 900, step_ms: int = 1000
    ) -> None:
        self.step_ms = step_ms
        now = int(time.time() * 1000)
        self.first_ms = now - now % step_ms - history_s * 1000
        n = (history_s + horizon_s) * 1000 // step_ms
        rng = np.random.default_rng(seed)
        closes = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0015, n)))
        opens = np.concatenate([[30_000.0], closes[:-1]])
        spread = np.abs(rng.normal(0.0, 0.0008, n)) * closes
        self.bars = np.column_stack(
            [
                opens,
                np.maximum(opens, closes) + spread,
                np.minimum(opens, closes) - spread,
                closes,
                rng.uniform(0.5, 5.0, n),
            ]
        )
        self.is_down = False
        self.requests = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/api/v3"

    def __enter__(self) -> LiveKlines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def down(self) -> None:
        self.is_down = True

    def up(self) -> None:
        self.is_down = False

    def time_of(self, bar: int) -> int:
        """The opening time of bar ``bar``, Unix milliseconds."""
        return self.first_ms + bar * self.step_ms

    def klines(self, start_ms: int, limit: int, now_ms: int) -> list[list[Any]]:
        first = max(0, math.ceil((start_ms - self.first_ms) / self.step_ms))
        forming = (now_ms - self.first_ms) // self.step_ms  # the bar still open now
        last = min(forming, len(self.bars) - 1, first + limit - 1)
        rows = []
        for bar in range(first, last + 1):
            o, h, low, c, v = (f"{x:.8f}" for x in self.bars[bar])
            opened = self.time_of(bar)
            rows.append([opened, o, h, low, c, v, opened + self.step_ms - 1, "0", 1, "0", "0", "0"])
        return rows

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                server.requests += 1
                if server.is_down:
                    self._send(503, {"code": -1, "msg": "Service unavailable"})
                    return
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                now = int(time.time() * 1000)
                if parts.path.endswith("/time"):
                    self._send(200, {"serverTime": now})
                elif parts.path.endswith("/exchangeInfo"):
                    self._send(200, _exchange_info(now))
                elif parts.path.endswith("/klines") and query.get("symbol") == SYMBOL:
                    start = int(query.get("startTime", server.first_ms))
                    limit = min(int(query.get("limit", 500)), 1000)
                    self._send(200, server.klines(start, limit, now))
                elif parts.path.endswith("/klines"):
                    self._send(400, {"code": -1121, "msg": "Invalid symbol."})
                else:
                    self._send(404, {"code": -1, "msg": f"no route {parts.path}"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _exchange_info(now: int) -> dict[str, Any]:
    filters = [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01",
            "maxPrice": "1000000",
            "tickSize": "0.01",
        },
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
    ]
    market = {
        "symbol": SYMBOL,
        "status": "TRADING",
        "baseAsset": BASE,
        "baseAssetPrecision": 8,
        "quoteAsset": QUOTE,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": filters,
        "permissions": ["SPOT"],
        "permissionSets": [["SPOT"]],
    }
    return {"timezone": "UTC", "serverTime": now, "rateLimits": [], "symbols": [market]}
