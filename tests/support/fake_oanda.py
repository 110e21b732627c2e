"""A local OANDA v20 REST server for the adapter's tests and the stack's venue agent: real
HTTP on 127.0.0.1.

It speaks the subset of the v20 API that ``OandaBroker`` uses (market orders, order lookup by
client id, transactions, cancel, pending orders, account summary, open positions), checks the
bearer token and the account id, and keeps orders, transactions, net positions and a balance.

Tests script it: ``inject`` a fault for the next requests to a path (answer 429 with a
Retry-After, or 503; or handle the request and then hold the answer, past the client's
timeout) and ``plan`` how the next orders end (filled, partly filled with the rest
cancelled, cancelled for a reason, left pending).

For the candles feed it also serves ``GET /v3/instruments/{instrument}/candles`` (mid prices,
``granularity``, ``from``, ``count``: 500 by default, 5000 at most; the forming candle with
``complete: false``) from seeded series (``candle_series``, ``tests.support.venue``) up to
its ``clock``, which is also the time in its ``Date`` header, and ``GET /v3/accounts``.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pandas as pd
from tests.support.venue import SeededSeries, VenueClock

Json = dict[str, Any]


@dataclass
class Fault:
    """What the next ``times`` requests whose path ends with ``path_end`` get instead."""

    method: str
    path_end: str
    status: int | None = None  # answer this status and do nothing else
    retry_after: str | None = None
    hold_s: float = 0.0  # handle the request (it takes effect), then hold the answer this long
    times: int = 1


@dataclass(frozen=True)
class Outcome:
    """How an order ends: ``fill`` is the fraction of its units filled; the rest is
    cancelled with ``cancel_reason``, unless the order stays ``pending``."""

    fill: float = 1.0
    cancel_reason: str = "INSUFFICIENT_LIQUIDITY"
    pending: bool = False


FILLED = Outcome()
PENDING = Outcome(fill=0.0, pending=True)


def partial(fill: float) -> Outcome:
    return Outcome(fill=fill)


def cancelled(reason: str) -> Outcome:
    return Outcome(fill=0.0, cancel_reason=reason)


@dataclass(frozen=True)
class _Reply:
    status: int
    payload: Json
    headers: tuple[tuple[str, str], ...] = ()
    hold_s: float = 0.0


class FakeOanda:
    """The server's state and behaviour; ``start`` it, then point the broker at ``url``."""

    def __init__(
        self,
        token: str = "practice-token",
        account_id: str = "101-004-1234567-001",
        balance: float = 100_000.0,
        commission_per_unit: float = 0.00005,
        clock: VenueClock | None = None,
    ) -> None:
        self.token = token
        self.account_id = account_id
        self.balance = balance
        self.commission_per_unit = commission_per_unit
        self.prices = {"EUR_USD": 1.1, "USD_JPY": 150.0}
        self.orders: dict[str, Json] = {}  # by order id
        self.transactions: dict[str, Json] = {}
        self.positions: dict[str, float] = {}
        self.requests: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.errors: list[str] = []  # the fake's own failures, which a test should see
        self._faults: list[Fault] = []
        self._outcomes: deque[Outcome] = deque()
        self._last_id = 0
        self._lock = threading.RLock()
        self.released = threading.Event()  # set on stop: held answers go out at once
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.clock = clock or VenueClock()  # the candles' clock and the Date header's
        self.candles_reversed = False  # send candles newest first (a protocol violation)
        self._candles: dict[tuple[str, str], SeededSeries] = {}

    # --- lifecycle and script -----------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def plan(self, *outcomes: Outcome) -> None:
        with self._lock:
            self._outcomes.extend(outcomes)

    def count(self, method: str, path_end: str = "") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p.endswith(path_end))

    def by_client_id(self, client_id: str) -> Json | None:
        with self._lock:
            for order in self.orders.values():
                if order["clientExtensions"]["id"] == client_id:
                    return order
            return None

    def fill_pending(self, client_id: str) -> None:
        """Fill a pending order in full, as if the market had come to it."""
        with self._lock:
            order = self.by_client_id(client_id)
            assert order is not None, f"no order {client_id!r}"
            assert order["state"] == "PENDING", order
            self._fill(order, int(order["units"]))
            order["state"] = "FILLED"

    # --- requests -----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Json,
        query: dict[str, str] | None = None,
    ) -> _Reply:
        with self._lock:
            self.requests.append((method, path))
            self.headers.append(headers)
            if headers.get("authorization") != f"Bearer {self.token}":
                return _Reply(
                    401, {"errorMessage": "Insufficient authorization to perform request."}
                )
            fault = self._take_fault(method, path)
            if fault is not None and fault.status is not None:
                extra = (("Retry-After", fault.retry_after),) if fault.retry_after else ()
                return _Reply(fault.status, {"errorMessage": "Service unavailable"}, extra)
            try:
                market = self._market(method, path, query or {})
                status, payload = market or self._route(method, path, body)
            except Exception:
                self.errors.append(traceback.format_exc())
                raise
            return _Reply(status, payload, hold_s=fault.hold_s if fault else 0.0)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and path.endswith(fault.path_end) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _market(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Json] | None:
        """The answer of a market data route (candles, the accounts list), or None."""
        if method == "GET" and path.startswith("/v3/instruments/") and path.endswith("/candles"):
            return self._candles_answer(path.split("/")[3], query)
        if (method, path) == ("GET", "/v3/accounts"):
            return 200, {"accounts": [{"id": self.account_id, "tags": []}]}
        return None

    def _route(self, method: str, path: str, body: Json) -> tuple[int, Json]:
        prefix = f"/v3/accounts/{self.account_id}/"
        if not path.startswith(prefix):
            return 403, {"errorMessage": "The provided request was forbidden."}
        match (method, *path[len(prefix) :].split("/")):
            case ("GET", "summary"):
                return 200, self._with_last({"account": self._summary()})
            case ("GET", "openPositions"):
                return 200, self._with_last({"positions": self._open_positions()})
            case ("GET", "pendingOrders"):
                pending = [o for o in self.orders.values() if o["state"] == "PENDING"]
                return 200, self._with_last({"orders": pending})
            case ("GET", "orders", specifier):
                order = self._find(specifier)
                if order is None:
                    return 404, _no_such_order()
                return 200, self._with_last({"order": order})
            case ("PUT", "orders", specifier, "cancel"):
                return self._cancel_request(specifier)
            case ("POST", "orders"):
                return self._place(body.get("order") or {})
            case ("GET", "transactions", transaction_id) if transaction_id in self.transactions:
                return 200, self._with_last({"transaction": self.transactions[transaction_id]})
            case _:
                return 404, {"errorMessage": f"no route for {method} {path}"}

    # --- candles ------------------------------------------------------------------------

    def candle_series(self, instrument: str = "EUR_USD", granularity: str = "H1") -> SeededSeries:
        """The candles of ``instrument`` at ``granularity``, from 2024-01-01 (made on first
        use), to cut (``gaps``) or corrupt."""
        key = (instrument, granularity)
        if key not in self._candles:
            step = _GRANULARITY[granularity]
            self._candles[key] = SeededSeries(_CANDLES_ORIGIN_MS, step, seed=3, price=1.1)
        return self._candles[key]

    def _candles_answer(self, instrument: str, query: dict[str, str]) -> tuple[int, Json]:
        granularity, count = query.get("granularity", "S5"), int(query.get("count", 500))
        if instrument not in self.prices or granularity not in _GRANULARITY:
            return 400, {"errorMessage": "Invalid value specified for 'instrument'"}
        if not 0 < count <= 5000 or query.get("price", "M") != "M":
            return 400, {"errorMessage": "Invalid value specified for 'count' or 'price'"}
        series, now = self.candle_series(instrument, granularity), self.clock.now_ms()
        if "from" in query:
            start = int(pd.Timestamp(query["from"]).value // 1_000_000)
            rows = series.bars(start, now, now, count)
        else:
            rows = series.latest(count, now)
        candles = [_candle(row, row[0] + series.step_ms <= now) for row in rows]
        ordered = candles[::-1] if self.candles_reversed else candles
        return 200, {"instrument": instrument, "granularity": granularity, "candles": ordered}

    # --- orders -------------------------------------------------------------------------

    def _place(self, request: Json) -> tuple[int, Json]:
        client_id = (request.get("clientExtensions") or {}).get("id", "")
        problem = self._problem(request, client_id)
        if problem:
            return 400, self._reject(request, problem)
        create = self._record(
            "MARKET_ORDER",
            reason="CLIENT_ORDER",
            **{k: request[k] for k in ("instrument", "units", "timeInForce", "positionFill")},
            clientExtensions={"id": client_id},
        )
        order = {
            "id": create["id"],
            "createTime": create["time"],
            "type": "MARKET",
            "state": "PENDING",
            **{k: create[k] for k in ("instrument", "units", "timeInForce", "positionFill")},
            "clientExtensions": {"id": client_id},
        }
        self.orders[order["id"]] = order
        payload: Json = {"orderCreateTransaction": create}
        outcome = self._outcomes.popleft() if self._outcomes else FILLED
        if not outcome.pending:
            payload |= self._execute(order, outcome)
        payload["relatedTransactionIDs"] = [
            str(i) for i in range(int(create["id"]), self._last_id + 1)
        ]
        return 201, self._with_last(payload)

    def _reject(self, request: Json, problem: str) -> Json:
        fields = {k: v for k, v in request.items() if k != "type"}
        reject = self._record("MARKET_ORDER_REJECT", rejectReason=problem, **fields)
        return self._with_last(
            {
                "orderRejectTransaction": reject,
                "errorCode": problem,
                "errorMessage": f"The order was rejected: {problem}",
            }
        )

    def _problem(self, request: Json, client_id: str) -> str:
        """Why OANDA would reject the order ("" when it would not)."""
        units = str(request.get("units", ""))
        if request.get("type") != "MARKET" or request.get("positionFill") != "DEFAULT":
            return "ORDER_TYPE_INVALID"
        if request.get("instrument") not in self.prices:
            return "INSTRUMENT_UNKNOWN"
        if not units.lstrip("-").isdigit() or int(units) == 0:
            return "UNITS_INVALID"
        if request.get("timeInForce") not in ("FOK", "IOC"):
            return "TIME_IN_FORCE_INVALID"
        if not 0 < len(client_id) <= 128:
            return "CLIENT_ORDER_ID_INVALID"
        if self.by_client_id(client_id) is not None:
            return "CLIENT_ORDER_ID_ALREADY_EXISTS"
        return ""

    def _execute(self, order: Json, outcome: Outcome) -> Json:
        units = int(order["units"])
        filled = int(units * outcome.fill)
        payload: Json = {}
        if filled:
            payload["orderFillTransaction"] = self._fill(order, filled)
            order["state"] = "FILLED"
        if filled != units:
            payload["orderCancelTransaction"] = self._cancel(order, outcome.cancel_reason)
        return payload

    def _fill(self, order: Json, units: int) -> Json:
        instrument = order["instrument"]
        price = self.prices[instrument]
        commission = abs(units) * self.commission_per_unit
        self.balance -= commission
        net = self.positions.get(instrument, 0) + units
        self.positions[instrument] = net
        fill = self._record(
            "ORDER_FILL",
            orderID=order["id"],
            clientOrderID=order["clientExtensions"]["id"],
            instrument=instrument,
            units=str(units),
            price=f"{price:.5f}",  # deprecated in v20 but still sent
            fullVWAP=f"{price:.5f}",
            reason="MARKET_ORDER",
            pl="0.0000",
            financing="0.0000",
            commission=f"{commission:.4f}",
            accountBalance=f"{self.balance:.4f}",
        )
        fill["tradeOpened"] = {"tradeID": fill["id"], "units": str(units), "price": fill["price"]}
        order["fillingTransactionID"] = fill["id"]
        order["filledTime"] = fill["time"]
        return fill

    def _cancel(self, order: Json, reason: str) -> Json:
        cancel = self._record(
            "ORDER_CANCEL",
            orderID=order["id"],
            clientOrderID=order["clientExtensions"]["id"],
            reason=reason,
        )
        order["state"] = "CANCELLED"
        order["cancellingTransactionID"] = cancel["id"]
        order["cancelledTime"] = cancel["time"]
        return cancel

    def _cancel_request(self, specifier: str) -> tuple[int, Json]:
        order = self._find(specifier)
        if order is None or order["state"] != "PENDING":
            reject = self._record("ORDER_CANCEL_REJECT", rejectReason="ORDER_DOESNT_EXIST")
            return 404, self._with_last({"orderCancelRejectTransaction": reject} | _no_such_order())
        cancel = self._cancel(order, "CLIENT_REQUEST")
        return 200, self._with_last(
            {"orderCancelTransaction": cancel, "relatedTransactionIDs": [cancel["id"]]}
        )

    def _find(self, specifier: str) -> Json | None:
        if specifier.startswith("@"):
            return self.by_client_id(specifier[1:])
        return self.orders.get(specifier)

    # --- account ------------------------------------------------------------------------

    def _summary(self) -> Json:
        return {
            "id": self.account_id,
            "currency": "USD",
            "balance": f"{self.balance:.4f}",
            "NAV": f"{self.balance:.4f}",
            "openPositionCount": sum(1 for units in self.positions.values() if units),
            "pendingOrderCount": sum(1 for o in self.orders.values() if o["state"] == "PENDING"),
        }

    def _open_positions(self) -> list[Json]:
        return [
            {
                "instrument": instrument,
                "long": {"units": str(max(net, 0)), "pl": "0.0000"},
                "short": {"units": str(min(net, 0)), "pl": "0.0000"},
                "pl": "0.0000",
            }
            for instrument, net in self.positions.items()
            if net
        ]

    def _record(self, kind: str, **fields: Any) -> Json:
        self._last_id += 1
        transaction = {
            "id": str(self._last_id),
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "accountID": self.account_id,
            "batchID": str(self._last_id),
            "type": kind,
            **fields,
        }
        self.transactions[transaction["id"]] = transaction
        return transaction

    def _with_last(self, payload: Json) -> Json:
        return payload | {"lastTransactionID": str(self._last_id)}


_CANDLES_ORIGIN_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_GRANULARITY = {"S5": 5, "M1": 60, "M5": 300, "H1": 3600, "H4": 14_400, "D": 86_400}


def _candle(bar: tuple[Any, ...], complete: bool) -> Json:
    stamp = pd.Timestamp(bar[0], unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
    prices = [v if isinstance(v, str) else f"{v:.5f}" for v in bar[1:5]]
    mid = dict(zip("ohlc", prices, strict=True))
    return {"complete": complete, "volume": int(bar[5]), "time": stamp, "mid": mid}


def _no_such_order() -> Json:
    return {"errorCode": "ORDER_DOESNT_EXIST", "errorMessage": "The Order specified does not exist"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # held answers must not delay stop()

    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: FakeOanda) -> None:
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone by the time a held answer is written: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            self.fake.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms each)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        url = urlsplit(self.path)
        path, query = unquote(url.path), dict(parse_qsl(url.query))
        fake = self.server.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = fake.handle(self.command, path, headers, body, query)
        if reply.hold_s:
            fake.released.wait(reply.hold_s)
        data = json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        for name, value in (("Content-Type", "application/json"), *reply.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header: the fake's clock (OANDA's time, as the candles feed reads it)."""
        return formatdate(self.server.fake.clock.now_ms() / 1000, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read fake.requests instead
