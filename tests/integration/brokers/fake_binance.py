"""A local stand-in for the Binance spot REST API: the subset ``CcxtBroker`` uses through ccxt.

A real HTTP server on 127.0.0.1 (ephemeral port) in a background thread. It keeps orders,
balances and trades, fills market orders at the price the test sets, and plays a script of
injected faults (the next N requests to a path answer 429 or 500, hang, are carried out but
never answered, fail authentication, or reject for insufficient balance). Private endpoints
check the API key header and the request's HMAC-SHA256 signature, as Binance does.

Endpoints: GET /api/v3/exchangeInfo, GET /api/v3/account, POST|GET|DELETE /api/v3/order,
GET /api/v3/openOrders, GET /api/v3/myTrades.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_KEY = "test-api-key"
SECRET = "test-secret"
COMMISSION_RATE = 0.001
WORKING = ("NEW", "PARTIALLY_FILLED")
_CLIENT_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
_PRIVATE = {"/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades"}
# (base asset, quote asset) of each market the fake lists
MARKETS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}


class ReplyError(Exception):
    """Raised inside a handler to answer with an HTTP error and a Binance error body."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


@dataclass
class Fault:
    """The next ``times`` requests to ``method path`` fail as ``kind``: "429", "500", "hang"
    (no answer), "drop" (carried out, but no answer), "auth", "missing" (order lookups find
    nothing) or "insufficient"."""

    method: str
    path: str
    kind: str
    times: int = 1
    retry_after: str | None = None


@dataclass
class FakeOrder:
    order_id: int
    client_id: str
    symbol: str
    side: str  # BUY or SELL
    quantity: float
    created: int
    executed: float = 0.0
    quote: float = 0.0  # cumulative quote quantity
    status: str = "NEW"
    later: list[float] = field(default_factory=list)  # fractions filled on later polls
    advance_on_poll: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": "0.00000000",
            "origQty": _num(self.quantity),
            "executedQty": _num(self.executed),
            "cummulativeQuoteQty": _num(self.quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": self.side,
            "time": self.created,
            "updateTime": _now_ms(),
            "isWorking": True,
            "origQuoteOrderQty": "0.00000000",
        }


def _num(value: float) -> str:
    return f"{value:.8f}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeBinance:
    """The exchange's state, the fault script and a log of every request it answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prices: dict[str, float] = {"BTCUSDT": 20_000.0, "ETHUSDT": 1_000.0}
        self.balances: dict[str, float] = {"USDT": 10_000.0, "BTC": 0.5, "ETH": 0.0, "BNB": 1.0}
        self.orders: dict[int, FakeOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.errors: list[str] = []  # protocol violations seen (a test fails on any)
        self.fee_asset: str | None = None  # None: the base asset on buys, the quote on sells
        self.hang_s = 1.0
        self._steps: tuple[list[float], bool] | None = None
        self._ids = itertools.count(1001)
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- test controls ------------------------------------------------------------------

    def fail(self, method: str, path: str, kind: str, times: int = 1, **kw: Any) -> None:
        """Script the next ``times`` requests to ``method path`` to fail as ``kind``."""
        with self.lock:
            self.faults.append(Fault(method, path, kind, times, **kw))

    def fill_in_steps(self, fractions: Iterable[float], *, advance_on_poll: bool) -> None:
        """The next order fills the first fraction at once, then (with ``advance_on_poll``)
        the next fraction at each GET of the order."""
        with self.lock:
            self._steps = (list(fractions), advance_on_poll)

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- request handling -----------------------------------------------------------------

    def handle(
        self, method: str, path: str, params: dict[str, str], api_key: str, payload: str
    ) -> Any:
        with self.lock:
            self.requests.append((method, path, params))
            if path in _PRIVATE:
                self._authenticate(path, params, api_key, payload)
            fault = self._take_fault(method, path)
        if fault is not None and fault.kind != "drop":
            self._play(fault)
        with self.lock:
            body = self._route(method, path, params)
        if fault is not None and fault.kind == "drop":  # done, but never answered
            self._hang()
        return body

    def _hang(self) -> None:
        self._released.wait(self.hang_s)
        raise ConnectionAbortedError("hung past the client's timeout")

    def _authenticate(self, path: str, params: dict[str, str], api_key: str, payload: str) -> None:
        if api_key != API_KEY:
            raise ReplyError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signed, _, signature = payload.rpartition("&signature=")
        if not signature or "timestamp" not in params:
            self.errors.append(f"unsigned private request to {path}")
            raise ReplyError(400, -1102, "Mandatory parameter 'signature' was not sent.")
        expected = hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise ReplyError(400, -1022, "Signature for this request is not valid.")

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if (fault.method, fault.path) == (method, path) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _play(self, fault: Fault) -> None:
        if fault.kind == "hang":
            self._hang()
        if fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            raise ReplyError(429, -1003, "Too many requests; current limit exceeded.", headers)
        if fault.kind == "500":
            raise ReplyError(500, -1000, "An unknown error occurred while processing the request.")
        if fault.kind == "auth":
            raise ReplyError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if fault.kind == "missing":
            raise ReplyError(400, -2013, "Order does not exist.")
        if fault.kind == "insufficient":
            raise _insufficient()
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _route(self, method: str, path: str, params: dict[str, str]) -> Any:
        routes = {
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/account"): self._account,
            ("POST", "/api/v3/order"): self._create,
            ("GET", "/api/v3/order"): self._query,
            ("DELETE", "/api/v3/order"): self._cancel,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
        }
        route = routes.get((method, path))
        if route is None:
            self.errors.append(f"unexpected request {method} {path}")
            raise ReplyError(404, -1000, f"no route {method} {path}")
        return route(params)

    def _exchange_info(self, _: dict[str, str]) -> Any:
        return {"timezone": "UTC", "serverTime": _now_ms(), "rateLimits": [], "symbols": [
            _market(symbol, base, quote) for symbol, (base, quote) in MARKETS.items()
        ]}  # fmt: skip

    def _account(self, _: dict[str, str]) -> Any:
        balances = [{"asset": a, "free": _num(v), "locked": "0.00000000"}
                    for a, v in self.balances.items()]  # fmt: skip
        return {"canTrade": True, "accountType": "SPOT", "balances": balances}

    def _create(self, params: dict[str, str]) -> Any:
        symbol, client_id = params["symbol"], params.get("newClientOrderId", "")
        if params.get("type") != "MARKET" or "quantity" not in params:
            self.errors.append(f"expected a market order with a quantity, got {params}")
            raise ReplyError(400, -1102, "Mandatory parameter 'quantity' was not sent.")
        if not _CLIENT_ID.fullmatch(client_id):
            raise ReplyError(
                400, -1100, "Illegal characters found in parameter 'newClientOrderId'."
            )
        if any(o.client_id == client_id and o.status in WORKING for o in self.orders.values()):
            raise ReplyError(400, -2010, "Duplicate order sent.")
        order = FakeOrder(next(self._ids), client_id, symbol, params["side"],
                          float(params["quantity"]), _now_ms())  # fmt: skip
        self._check_funds(order)
        steps, order.advance_on_poll = self._steps or ([1.0], False)
        self._steps = None
        order.later = steps[1:]
        self.orders[order.order_id] = order
        fills = [self._fill(order, steps[0] * order.quantity)]
        return {**order.as_json(), "transactTime": order.created, "fills": fills}

    def _check_funds(self, order: FakeOrder) -> None:
        base, quote = MARKETS[order.symbol]
        price = self.prices[order.symbol]
        if order.side == "BUY" and order.quantity * price > self.balances.get(quote, 0.0):
            raise _insufficient()
        if order.side == "SELL" and order.quantity > self.balances.get(base, 0.0):
            raise _insufficient()

    def _fill(self, order: FakeOrder, quantity: float) -> dict[str, Any]:
        """Execute ``quantity`` of the order at the market price; return the fill."""
        base, quote = MARKETS[order.symbol]
        price = self.prices[order.symbol]
        cost = quantity * price
        asset = self.fee_asset or (base if order.side == "BUY" else quote)
        commission = {base: quantity, quote: cost}.get(asset, 0.01) * COMMISSION_RATE
        sign = 1.0 if order.side == "BUY" else -1.0
        self.balances[base] = self.balances.get(base, 0.0) + sign * quantity
        self.balances[quote] = self.balances.get(quote, 0.0) - sign * cost
        self.balances[asset] = self.balances.get(asset, 0.0) - commission
        order.executed += quantity
        order.quote += cost
        order.status = "FILLED" if order.executed >= order.quantity - 1e-12 else "PARTIALLY_FILLED"
        trade = {"symbol": order.symbol, "id": len(self.trades) + 1, "orderId": order.order_id,
                 "orderListId": -1, "price": _num(price), "qty": _num(quantity),
                 "quoteQty": _num(cost), "commission": _num(commission),
                 "commissionAsset": asset, "time": _now_ms(), "isBuyer": order.side == "BUY",
                 "isMaker": False, "isBestMatch": True}  # fmt: skip
        self.trades.append(trade)
        return {"price": trade["price"], "qty": trade["qty"], "commission": trade["commission"],
                "commissionAsset": asset, "tradeId": trade["id"]}  # fmt: skip

    def _find(self, params: dict[str, str]) -> FakeOrder | None:
        client_id = params.get("origClientOrderId")
        for order in self.orders.values():
            if order.symbol != params.get("symbol"):
                continue
            if client_id is not None and order.client_id == client_id:
                return order
            if client_id is None and str(order.order_id) == params.get("orderId"):
                return order
        return None

    def _query(self, params: dict[str, str]) -> Any:
        order = self._find(params)
        if order is None:
            raise ReplyError(400, -2013, "Order does not exist.")
        if order.advance_on_poll and order.later and order.status in WORKING:
            self._fill(order, order.later.pop(0) * order.quantity)
        return order.as_json()

    def _cancel(self, params: dict[str, str]) -> Any:
        order = self._find(params)
        if order is None or order.status not in WORKING:
            raise ReplyError(400, -2011, "Unknown order sent.")
        order.status = "CANCELED"
        return {**order.as_json(), "origClientOrderId": order.client_id,
                "clientOrderId": f"cancel{order.order_id}"}  # fmt: skip

    def _open_orders(self, params: dict[str, str]) -> Any:
        return [o.as_json() for o in self.orders.values()
                if o.status in WORKING and o.symbol == params.get("symbol", o.symbol)]  # fmt: skip

    def _my_trades(self, params: dict[str, str]) -> Any:
        return [t for t in self.trades if t["symbol"] == params["symbol"]
                and str(t["orderId"]) == params.get("orderId", str(t["orderId"]))]  # fmt: skip


def _insufficient() -> ReplyError:
    return ReplyError(400, -2010, "Account has insufficient balance for requested action.")


def _market(symbol: str, base: str, quote: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "1000000.00",
                "tickSize": "0.01",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001",
                "maxQty": "9000.00000",
                "stepSize": "0.00001",
            },
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBinance

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the request log on failure through ``fake.requests``."""

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length).decode() if length else url.query
        params = dict(parse_qsl(payload, keep_blank_values=True))
        api_key = self.headers.get("X-MBX-APIKEY", "")
        try:
            body = self.fake.handle(method, url.path, params, api_key, payload)
        except ReplyError as reply:
            self._send(reply.status, {"code": reply.code, "msg": reply.msg}, reply.headers)
        except ConnectionAbortedError:
            self.close_connection = True  # answer nothing: the client has given up
        else:
            self._send(200, body, {})

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
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
