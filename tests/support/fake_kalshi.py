"""A local Kalshi trade API v2 server for the adapter's tests: real HTTP on 127.0.0.1.

It speaks the subset ``KalshiBroker`` and ``KalshiSource`` use: orders (create, list, cancel),
fills, positions, balance, settlements, markets, events, order books, candlesticks, and the
historical endpoints for markets it is told are ``archived``. Every portfolio
request must carry a valid RSA-PSS signature by a known key with a fresh timestamp (else 401,
as Kalshi answers); market data is public, but a signature sent with it is checked too.

The account follows Kalshi's rules: cash in cents, net positions per market (negative: NO),
YES against NO nets (a pair pays 100 cents), taker fees of ceil(7 * count * p * (100 - p) /
10000) cents, a client_order_id used once (409 after), 100 cents per winning contract.

Tests script it: ``inject`` a fault for the next requests to a path (a status with an
optional Retry-After, a 200 with a malformed body, or the right answer held past the client's
timeout), ``plan`` how much of the next orders
fills (the rest is cancelled for immediate_or_cancel, rests for good_till_canceled),
``fill_more`` of a resting order, ``settle`` a market, and set ``rate_limit`` to answer 429
to requests beyond a count per window, as Kalshi does.
"""

from __future__ import annotations

import base64
import math
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.support.json_http import Json, JsonServer, Reply

PREFIX = "/trade-api/v2"


@dataclass
class Fault:
    """What the next ``times`` requests whose path ends with ``path_end`` get instead: the
    ``status`` (with ``retry_after``) and an error, or with ``payload`` a 200 whose body is
    that text, or with ``status`` 200 and ``hold_s`` the normal answer, late."""

    method: str
    path_end: str
    status: int = 503
    retry_after: str | None = None
    payload: str | None = None
    hold_s: float = 0.0  # with status 200: answer normally, but only after this long
    times: int = 1


@cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """An RSA key per name, made once per process (2048 bits, as Kalshi issues)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_of(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def market(ticker: str, event: str, price: int = 40, **fields: Any) -> Json:
    """A market as ``GET /markets/{ticker}`` describes it, trading at ``price`` cents."""
    return {
        "ticker": ticker,
        "event_ticker": event,
        "market_type": "binary",
        "status": "active",
        "result": "",
        "close_time": "2026-12-31T00:00:00Z",
        "yes_bid": price - 1,
        "yes_ask": price,
        "last_price": price,
        "last_price_dollars": f"{price / 100:.4f}",
        **fields,
    }


class FakeKalshi:
    """The server's state and behaviour; ``start`` it, then point the broker at ``url``."""

    def __init__(
        self, public_keys: dict[str, rsa.RSAPublicKey], balance_cents: int = 100_000
    ) -> None:
        self.public_keys = public_keys
        self.balance = balance_cents
        self.max_skew_s = 5.0
        self.page_size = 100
        self.rate_limit: tuple[int, float] | None = None  # requests per window of seconds
        self.markets: dict[str, Json] = {
            "KXRAIN-26DEC08-NYC": market("KXRAIN-26DEC08-NYC", "KXRAIN-26DEC08", 40),
            "KXRAIN-26DEC08-SF": market("KXRAIN-26DEC08-SF", "KXRAIN-26DEC08", 70),
        }
        self.candles: dict[str, list[Json]] = {}
        self.archived: set[str] = set()  # served by the historical endpoints only, in dollars
        self.orders: dict[str, Json] = {}
        self.fills: list[Json] = []
        self.positions: dict[str, int] = {}
        self.settlements: list[Json] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, query
        self.refused: list[str] = []  # why each 401 was sent
        self._faults: list[Fault] = []
        self._plans: deque[float] = deque()
        self._recent: deque[float] = deque()
        self._ids = 0
        self._lock = threading.RLock()
        self.released = threading.Event()  # set on stop: held answers go out at once
        self._http = JsonServer(self.handle)

    # --- lifecycle and script ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._http.address + PREFIX

    @property
    def errors(self) -> list[str]:
        """The fake's own failures, which a test should see."""
        return self._http.errors

    def start(self) -> str:
        self._http.start()
        return self.url

    def stop(self) -> None:
        self.released.set()
        self._http.stop()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def plan(self, *fractions: float) -> None:
        """The next orders fill these fractions of their count (rounded down)."""
        with self._lock:
            self._plans.extend(fractions)

    def count(self, method: str, path_end: str = "") -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.endswith(path_end))

    def by_client_id(self, client_id: str) -> Json | None:
        with self._lock:
            return next(
                (o for o in self.orders.values() if o["client_order_id"] == client_id), None
            )

    def fill_more(self, client_id: str, count: int) -> None:
        """Fill ``count`` more contracts of a resting order, as if the market came to it."""
        with self._lock:
            order = self.by_client_id(client_id)
            assert order is not None, f"no order {client_id!r}"
            assert order["status"] == "resting", order
            self._fill(order, min(count, order["remaining_count"]))

    def settle(self, ticker: str, result: str) -> None:
        """Determine the market: cancel its resting orders, pay 100 cents per winning
        contract, close every position in it."""
        with self._lock:
            self.markets[ticker] |= {
                "status": "finalized",
                "result": result,
                "settlement_value": 100 if result == "yes" else 0,
                "settlement_ts": now_iso(),
            }
            for order in self.orders.values():
                if order["ticker"] == ticker and order["status"] == "resting":
                    order["status"] = "canceled"
            net = self.positions.pop(ticker, 0)
            won = net if result == "yes" else -net
            revenue = 100 * max(won, 0)
            self.balance += revenue
            self.settlements.append(
                {
                    "ticker": ticker,
                    "market_result": result,
                    "yes_count": max(net, 0),
                    "no_count": max(-net, 0),
                    "revenue": revenue,
                    "settled_time": now_iso(),
                }
            )

    # --- requests ---------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: Json
    ) -> Reply:
        with self._lock:
            self.requests.append((method, path, query))
            refusal = self._refusal(method, path, headers)
            if refusal:
                self.refused.append(refusal)
                return 401, _error("authentication_error", refusal), ()
            if self._too_fast():
                limited = _error("too_many_requests", "rate limit exceeded")
                return 429, limited, (("Retry-After", "0.05"),)
            fault = self._take_fault(method, path)
        if fault is not None and fault.status == 200 and fault.payload is None:
            self.released.wait(fault.hold_s)  # past the client's timeout: it retries meanwhile
            fault = None
        if fault is not None:
            if fault.payload is not None:
                return 200, fault.payload, ()
            extra = (("Retry-After", fault.retry_after),) if fault.retry_after else ()
            return fault.status, _error("internal_error", "try again"), extra
        with self._lock:
            try:
                status, payload = self._route(method, unquote(path), parse_qs(query), body)
            except Exception:
                self.errors.append(traceback.format_exc())
                raise
            return status, payload, ()

    def _refusal(self, method: str, path: str, headers: dict[str, str]) -> str:
        """Why the request's signature is refused ("" when it is good or not needed)."""
        key_id = headers.get("kalshi-access-key")
        if key_id is None and not path.startswith(PREFIX + "/portfolio"):
            return ""  # public market data
        stamp = headers.get("kalshi-access-timestamp", "")
        signature = headers.get("kalshi-access-signature", "")
        if key_id not in self.public_keys:
            return f"unknown API key {key_id!r}"
        if not stamp.isdigit() or abs(int(stamp) / 1000 - time.time()) > self.max_skew_s:
            return f"timestamp {stamp!r} is not within {self.max_skew_s}s of now"
        message = f"{stamp}{method}{path}".encode()
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
        try:
            self.public_keys[key_id].verify(
                base64.b64decode(signature), message, pss, hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        return ""

    def _too_fast(self) -> bool:
        """Over the rate limit: as many requests answered within the window already."""
        if self.rate_limit is None:
            return False
        count, window_s = self.rate_limit
        now = time.monotonic()
        while self._recent and now - self._recent[0] > window_s:
            self._recent.popleft()
        if len(self._recent) >= count:
            return True
        self._recent.append(now)
        return False

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and path.endswith(fault.path_end) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Json
    ) -> tuple[int, Json]:
        if not path.startswith(PREFIX + "/"):
            return 404, _error("not_found", f"no route {path}")
        one = {key: values[0] for key, values in query.items()}
        route = (method, *path[len(PREFIX) + 1 :].split("/"))
        if route[1] == "portfolio":
            return self._portfolio(route, one, body)
        if route[1] == "historical":
            return self._historical(route, one)
        match route:
            case ("GET", "markets", ticker) if (
                ticker in self.markets and ticker not in self.archived
            ):
                return 200, {"market": self.markets[ticker]}
            case ("GET", "markets", ticker, "orderbook") if ticker in self.markets:
                price = self.markets[ticker]["yes_ask"]
                levels = {"yes": [(price - 1, 120), (price - 2, 300)], "no": [(100 - price, 80)]}
                legacy = {side: [[p, q] for p, q in rows] for side, rows in levels.items()}
                fixed = {
                    f"{side}_dollars": [[f"{p / 100:.4f}", f"{q:.2f}"] for p, q in rows]
                    for side, rows in levels.items()
                }
                return 200, {"orderbook": legacy, "orderbook_fp": fixed}
            case ("GET", "exchange", "status"):
                return 200, {"exchange_active": True, "trading_active": True}
            case ("GET", "events", event):
                series = event.split("-", 1)[0]
                return 200, {"event": {"event_ticker": event, "series_ticker": series}}
            case ("GET", "series", series, "markets", ticker, "candlesticks") if (
                ticker in self.markets and series == ticker.split("-", 1)[0]
            ):
                return self._candlesticks(ticker, one)
            case _:
                return 404, _error("not_found", f"no route for {method} {path}")

    def _portfolio(
        self, route: tuple[str, ...], one: dict[str, str], body: Json
    ) -> tuple[int, Json]:
        match route:
            case ("POST", "portfolio", "orders"):
                return self._place(body)
            case ("GET", "portfolio", "orders"):
                chosen = [o for o in self.orders.values() if _matches(o, one, ("ticker", "status"))]
                return 200, self._page("orders", chosen, one)
            case ("DELETE", "portfolio", "orders", order_id):
                return self._cancel(order_id)
            case ("GET", "portfolio", "fills"):
                chosen = [f for f in self.fills if _matches(f, one, ("order_id", "ticker"))]
                return 200, self._page("fills", chosen, one)
            case ("GET", "portfolio", "positions"):
                rows = [_position(t, n) for t, n in self.positions.items() if n]
                return 200, self._page("market_positions", rows, one) | {"event_positions": []}
            case ("GET", "portfolio", "balance"):
                return 200, {"balance": self.balance, "portfolio_value": self.balance}
            case ("GET", "portfolio", "settlements"):
                return 200, self._page("settlements", self.settlements, one)
            case _:
                return 404, _error("not_found", f"no route for {'/'.join(route)}")

    def _historical(self, route: tuple[str, ...], one: dict[str, str]) -> tuple[int, Json]:
        """Archived markets: the same market, candlesticks with every price a dollar string."""
        match route:
            case ("GET", "historical", "markets", ticker) if ticker in self.archived:
                return 200, {"market": self.markets[ticker]}
            case ("GET", "historical", "markets", ticker, "candlesticks") if (
                ticker in self.archived
            ):
                status, body = self._candlesticks(ticker, one)
                body["candlesticks"] = [_in_dollars(c) for c in body.get("candlesticks", [])]
                return status, body
            case _:
                return 404, _error("not_found", f"no historical route {'/'.join(route)}")

    def _page(self, key: str, items: list[Json], query: dict[str, str]) -> Json:
        start = int(query.get("cursor") or 0)
        size = min(int(query.get("limit") or 100), self.page_size)
        end = start + size
        return {key: items[start:end], "cursor": str(end) if end < len(items) else ""}

    def _candlesticks(self, ticker: str, query: dict[str, str]) -> tuple[int, Json]:
        if query.get("period_interval") not in ("1", "60", "1440"):
            return 400, _error("invalid_parameters", "period_interval must be 1, 60 or 1440")
        start, end = int(query["start_ts"]), int(query["end_ts"])
        chosen = [c for c in self.candles.get(ticker, []) if start <= c["end_period_ts"] <= end]
        return 200, {"ticker": ticker, "candlesticks": chosen}

    # --- orders -----------------------------------------------------------------------------

    def _place(self, request: Json) -> tuple[int, Json]:
        problem = self._problem(request)
        if problem:
            status, code = (409, "order_already_exists") if problem == "duplicate" else problem
            return status, _error(code, f"order refused: {code}")
        self._ids += 1
        count = int(request["count"])
        order = {
            "order_id": f"ord-{self._ids}",
            "user_id": "user-1",
            "client_order_id": request["client_order_id"],
            "ticker": request["ticker"],
            "side": request["side"],
            "action": request["action"],
            "type": request.get("type", "limit"),
            "status": "resting",
            "yes_price": request["yes_price"],
            "no_price": 100 - request["yes_price"],
            "initial_count": count,
            "fill_count": 0,
            "remaining_count": count,
            "taker_fees": 0,
            "maker_fees": 0,
            "created_time": now_iso(),
            "time_in_force": request.get("time_in_force", "good_till_canceled"),
        }
        self.orders[order["order_id"]] = order
        fraction = self._plans.popleft() if self._plans else 1.0
        price = self.markets[request["ticker"]]["yes_ask"]
        crosses = (
            price <= order["yes_price"] if order["action"] == "buy" else price >= order["yes_price"]
        )
        if crosses:
            self._fill(order, int(count * fraction))
        if order["status"] == "resting" and order["time_in_force"] != "good_till_canceled":
            order["status"] = "canceled"
        return 201, {"order": order}

    def _problem(self, request: Json) -> tuple[int, str] | str:
        ticker = request.get("ticker")
        if ticker not in self.markets:
            return 404, "market_not_found"
        if self.markets[ticker]["status"] != "active":
            return 400, "market_closed"
        if request.get("side") != "yes" or request.get("action") not in ("buy", "sell"):
            return 400, "invalid_parameters"
        count, price = request.get("count"), request.get("yes_price")
        if (
            not isinstance(count, int)
            or count < 1
            or not isinstance(price, int)
            or not 1 <= price <= 99
        ):
            return 400, "invalid_parameters"
        if not request.get("client_order_id"):
            return 400, "invalid_parameters"
        if self.by_client_id(request["client_order_id"]) is not None:
            return "duplicate"
        if request["action"] == "buy" and count * price > self.balance:
            return 400, "insufficient_balance"
        return ""

    def _fill(self, order: Json, count: int) -> None:
        if count <= 0:
            return
        ticker = order["ticker"]
        price = self.markets[ticker]["yes_ask"]
        sign = 1 if order["action"] == "buy" else -1
        net = self.positions.get(ticker, 0)
        for _ in range(count):  # one contract at a time: netting against NO is per contract
            if sign > 0:
                self.balance += (100 - price) if net < 0 else -price
            else:
                self.balance += price if net > 0 else -(100 - price)
            net += sign
        self.positions[ticker] = net
        fee = math.ceil(7 * count * price * (100 - price) / 10_000)
        self.balance -= fee
        order["fill_count"] += count
        order["remaining_count"] -= count
        order["taker_fees"] += fee
        if order["remaining_count"] == 0:
            order["status"] = "executed"
        self._ids += 1
        self.fills.append(
            {
                "fill_id": f"fill-{self._ids}",
                "trade_id": f"trade-{self._ids}",
                "order_id": order["order_id"],
                "client_order_id": order["client_order_id"],
                "ticker": ticker,
                "side": order["side"],
                "action": order["action"],
                "count": count,
                "count_fp": f"{count:.2f}",
                "yes_price": price,
                "no_price": 100 - price,
                "yes_price_fixed": f"{price / 100:.4f}",
                "no_price_fixed": f"{(100 - price) / 100:.4f}",
                "is_taker": True,
                "created_time": now_iso(),
            }
        )

    def _cancel(self, order_id: str) -> tuple[int, Json]:
        order = self.orders.get(order_id)
        if order is None or order["status"] != "resting":
            return 404, _error("not_found", "order not found or not resting")
        reduced = order["remaining_count"]
        order["status"] = "canceled"
        order["remaining_count"] = 0
        return 200, {"order": order, "reduced_by": reduced}


def _in_dollars(candle: Json) -> Json:
    """A live candlestick as the historical endpoint gives it: dollar strings, no cents."""

    def dollars(prices: Json) -> Json:
        return {k: None if v is None else f"{v / 100:.4f}" for k, v in prices.items()}

    return {
        "end_period_ts": candle["end_period_ts"],
        "price": dollars(candle["price"]),
        "yes_bid": dollars(candle["yes_bid"]),
        "yes_ask": dollars(candle["yes_ask"]),
        "volume": f"{candle['volume']:.2f}",
        "open_interest": f"{candle['open_interest']:.2f}",
    }


def _matches(item: Json, query: dict[str, str], keys: tuple[str, ...]) -> bool:
    return all(item.get(key) == query[key] for key in keys if key in query)


def _position(ticker: str, net: int) -> Json:
    return {"ticker": ticker, "position": net, "position_fp": f"{net:.2f}", "market_exposure": 0}


def _error(code: str, message: str) -> Json:
    return {"error": {"code": code, "message": message, "service": "fake-kalshi"}}
