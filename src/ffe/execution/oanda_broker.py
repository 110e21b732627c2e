"""Forex on an OANDA account through the v20 REST API, behind the ``Broker`` protocol.

Practice accounts by default: the live environment trades real money, so it takes
``environment="live"`` *and* ``live=True``. Orders are market orders, Immediate-Or-Cancel by
default, so OANDA may fill part of one and cancel the rest. Each order carries the agent's
client id in its client extensions; that id finds the order again (``orders/@{client id}``)
and makes ``submit`` idempotent.

429 (after its Retry-After), 5xx, connection failures and timeouts are retried with
exponential backoff, then raise ``TemporaryBrokerError``. A POST that failed may have placed
the order all the same, so ``submit`` looks the client id up again before each retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from ffe.domain.errors import BrokerError, ConfigError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import AccountSnapshot, BrokerOrder
from ffe.execution.venue_http import RetryableError, reading, send

log = logging.getLogger(__name__)

PRACTICE_URL: Final = "https://api-fxpractice.oanda.com"
LIVE_URL: Final = "https://api-fxtrade.oanda.com"
MAX_CLIENT_ID: Final = 128  # OANDA's limit on a client extensions id
TIMES_IN_FORCE: Final = ("IOC", "FOK")

_ALREADY_EXISTS = "CLIENT_ORDER_ID_ALREADY_EXISTS"
_CLIENT_REQUEST = "CLIENT_REQUEST"  # the cancel reason when we asked for the cancel
_UNITS_TOLERANCE = 1e-9

Json = dict[str, Any]


class OandaBroker:
    """Market orders on an OANDA v20 account, practice unless told otherwise."""

    name = "oanda"
    durable = True

    def __init__(
        self,
        token: str,
        account_id: str,
        *,
        environment: str = "practice",
        live: bool = False,
        base_url: str | None = None,
        time_in_force: str = "IOC",
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ) -> None:
        """``token`` is the account's API token, ``account_id`` its v20 id (``101-...``).
        ``environment`` is ``practice`` or ``live``; live also needs ``live=True``.
        ``base_url`` replaces the environment's address: it exists for tests against a local
        server. A request is retried ``max_retries`` times after ``backoff_s``, doubling up to
        ``max_backoff_s``; each attempt gives up after ``timeout_s``."""
        self._url = _base_url(environment, live, base_url)
        _check_settings(token, account_id, time_in_force, timeout_s, max_retries, backoff_s)
        self._prefix = f"/v3/accounts/{quote(account_id, safe='')}"
        self._time_in_force = time_in_force
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._client = httpx.AsyncClient(
            base_url=self._url,
            headers={"Authorization": f"Bearer {token}", "Accept-Datetime-Format": "RFC3339"},
            timeout=timeout_s,
        )
        log.info("oanda broker for account %s at %s", account_id, self._url)

    @property
    def base_url(self) -> str:
        """The address requests go to."""
        return self._url

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        """Send a market order for ``quantity`` units of the instrument ``symbol``
        (``EUR_USD``). ``reference_price`` is not needed by OANDA and is not sent."""
        request = self._market_order(client_id, symbol, quantity)
        attempt = 0
        while True:
            # Before every attempt, not only the first: a failed POST may have placed it.
            known = await self.order(client_id, symbol)
            if known is not None:
                log.info(
                    "oanda order %s already known (%s): nothing sent", client_id, known.status.value
                )
                return known
            try:
                response = await self._attempt("POST", "/orders", request)
            except RetryableError as failure:
                await self._after_failure(
                    attempt,
                    failure,
                    f"submit of order {client_id}",
                    "it may have been placed: submit the same client id again to find out",
                )
                attempt += 1
                continue
            placed = await self._placed(response, client_id, symbol, quantity)
            _log_order(placed)
            return placed

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        _check_client_id(client_id)
        response = await self._call("GET", f"/orders/{_specifier(client_id)}")
        if response.status_code == 404:
            return None
        raw = _body(response, "GET order")
        with _reading("GET order"):
            return await self._view(raw["order"])

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        current = await self.order(client_id, symbol)
        if current is None or current.done:
            return current
        response = await self._call("PUT", f"/orders/{_specifier(client_id)}/cancel")
        # 404: the order stopped being pending meanwhile; read what became of it.
        if response.status_code != 404:
            _body(response, f"cancel of order {client_id}")
        log.info("oanda order %s: cancel sent", client_id)
        return await self.order(client_id, symbol)

    async def open_orders(self) -> list[BrokerOrder]:
        """Pending orders that carry a client id (orders placed by hand or attached to trades,
        such as take-profits, have none and are not the agent's)."""
        body = await self._get("/pendingOrders")
        working = []
        with _reading("GET pendingOrders"):
            for raw in body["orders"]:
                client_id = (raw.get("clientExtensions") or {}).get("id")
                if client_id and "units" in raw and "instrument" in raw:
                    working.append(
                        BrokerOrder(
                            client_id,
                            raw["instrument"],
                            float(raw["units"]),
                            broker_id=str(raw["id"]),
                        )
                    )
        return working

    async def account(self) -> AccountSnapshot:
        """The balance (realised cash, before open positions' unrealised P/L) and the net
        units of each instrument held."""
        summary = await self._get("/summary")
        open_positions = await self._get("/openPositions")
        with _reading("GET summary and openPositions"):
            cash = float(summary["account"]["balance"])
            positions = {}
            for raw in open_positions["positions"]:
                net = float(raw["long"]["units"]) + float(raw["short"]["units"])
                if net != 0:
                    positions[str(raw["instrument"])] = net
        return AccountSnapshot(cash, positions)

    async def wait(
        self, client_id: str, symbol: str, timeout_s: float = 30.0, poll_s: float = 1.0
    ) -> BrokerOrder:
        """Ask every ``poll_s`` until the order is done or ``timeout_s`` has passed; return it
        as last seen (check ``done``). BrokerError if OANDA has no such order."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            current = await self.order(client_id, symbol)
            if current is None:
                raise BrokerError(f"OANDA has no order with client id {client_id!r}")
            left = deadline - loop.time()
            if current.done or left <= 0:
                return current
            await asyncio.sleep(min(poll_s, left))

    async def close(self) -> None:
        await self._client.aclose()

    # --- orders ---------------------------------------------------------------------------

    def _market_order(self, client_id: str, symbol: str, quantity: float) -> Json:
        _check_client_id(client_id)
        order = {
            "type": "MARKET",
            "instrument": symbol,
            "units": _units(quantity),
            "timeInForce": self._time_in_force,
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": client_id},
        }
        return {"order": order}

    async def _placed(
        self, response: httpx.Response, client_id: str, symbol: str, quantity: float
    ) -> BrokerOrder:
        """The order as OANDA's answer to the POST describes it."""
        body = _json(response)
        reject = body.get("orderRejectTransaction") if response.status_code in (400, 404) else None
        if isinstance(reject, dict):
            reason = str(reject.get("rejectReason") or "REJECTED")
            if reason == _ALREADY_EXISTS:  # another submit of the same id got there first
                known = await self.order(client_id, symbol)
                if known is not None:
                    return known
            detail = body.get("errorMessage")
            reason = f"{reason}: {detail}" if detail else reason
            return BrokerOrder(client_id, symbol, quantity, OrderStatus.REJECTED, reason=reason)
        body = _body(response, f"submit of order {client_id}")
        with _reading("POST orders"):
            fill = body.get("orderFillTransaction")
            cancel = body.get("orderCancelTransaction")
            return _order_view(
                client_id,
                symbol,
                quantity,
                broker_id=str(body["orderCreateTransaction"]["id"]),
                fill=fill,
                cancel=cancel,
                working=fill is None and cancel is None,
            )

    async def _view(self, raw: Json) -> BrokerOrder:
        """A v20 order (from ``GET orders/...``) with its fill and cancel transactions."""
        working = raw["state"] == "PENDING"
        fill = None if working else await self._transaction(raw.get("fillingTransactionID"))
        cancel = None if working else await self._transaction(raw.get("cancellingTransactionID"))
        return _order_view(
            str(raw["clientExtensions"]["id"]),
            str(raw["instrument"]),
            float(raw["units"]),
            broker_id=str(raw["id"]),
            fill=fill,
            cancel=cancel,
            working=working,
        )

    async def _transaction(self, transaction_id: object) -> Json | None:
        if not transaction_id:
            return None
        body = await self._get(f"/transactions/{quote(str(transaction_id), safe='')}")
        with _reading("GET transaction"):
            transaction: Json = body["transaction"]
            return transaction

    # --- HTTP -----------------------------------------------------------------------------

    async def _get(self, path: str) -> Json:
        return _body(await self._call("GET", path), f"GET {path}")

    async def _call(self, method: str, path: str) -> httpx.Response:
        """One request, retried on 429, 5xx, connection failures and timeouts."""
        attempt = 0
        while True:
            try:
                return await self._attempt(method, path)
            except RetryableError as failure:
                await self._after_failure(attempt, failure, f"{method} {path}")
            attempt += 1

    async def _attempt(self, method: str, path: str, body: Json | None = None) -> httpx.Response:
        return await send(
            self._client,
            method,
            self._prefix + path,
            venue="OANDA",
            what=f"{method} {path}",
            refused=lambda response: (
                f"{_message(response)}): check the API token and the account id, and that "
                "they belong to the same environment (practice or live)"
            ),
            json=body,
        )

    async def _after_failure(
        self, attempt: int, failure: RetryableError, what: str, hint: str = "retry later"
    ) -> None:
        """Wait before the next attempt, or raise once the retries are spent."""
        if attempt >= self._max_retries:
            raise TemporaryBrokerError(
                f"OANDA {what} failed {attempt + 1} times (last: {failure.failure}); {hint}"
            ) from failure
        delay = failure.retry_after
        if delay is None:
            delay = min(self._backoff_s * 2**attempt, self._max_backoff_s)
        log.warning(
            "oanda %s: %s; retry %d of %d in %.2fs",
            what,
            failure.failure,
            attempt + 1,
            self._max_retries,
            delay,
        )
        await asyncio.sleep(delay)


# --- settings ---------------------------------------------------------------------------------


def _base_url(environment: str, live: bool, base_url: str | None) -> str:
    if environment not in ("practice", "live"):
        raise ConfigError(f"unknown OANDA environment {environment!r}: use 'practice' or 'live'")
    url = base_url or (LIVE_URL if environment == "live" else PRACTICE_URL)
    goes_live = urlsplit(url).hostname == urlsplit(LIVE_URL).hostname
    if goes_live and not live:
        raise ConfigError(
            "the OANDA live environment trades real money: pass live=True as well to use it, "
            "or use environment='practice'"
        )
    if live and not goes_live:
        raise ConfigError(
            f"live=True but the broker would trade on {url}: set environment='live' "
            "(or leave live at False for the practice environment)"
        )
    return url.rstrip("/")


def _check_settings(
    token: str,
    account_id: str,
    time_in_force: str,
    timeout_s: float,
    max_retries: int,
    backoff_s: float,
) -> None:
    if not token.strip():
        raise ConfigError("the OANDA API token is empty: set it (from the OANDA account page)")
    if not account_id.strip():
        raise ConfigError("the OANDA account id is empty: set it (like 101-004-1234567-001)")
    if time_in_force not in TIMES_IN_FORCE:
        raise ConfigError(
            f"time_in_force {time_in_force!r} is not for market orders: use 'IOC' or 'FOK'"
        )
    if not timeout_s > 0 or max_retries < 0 or backoff_s < 0:
        raise ConfigError(
            "timeout_s must be positive, max_retries and backoff_s zero or more; got "
            f"{timeout_s}, {max_retries}, {backoff_s}"
        )


def _check_client_id(client_id: str) -> None:
    if not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise BrokerError(
            f"client id {client_id[:40]!r} has {len(client_id)} characters: OANDA's client "
            f"extensions take 1 to {MAX_CLIENT_ID}; use a shorter id"
        )


def _specifier(client_id: str) -> str:
    """The v20 order specifier that finds an order by client id."""
    return "@" + quote(client_id, safe="")


def _units(quantity: float) -> str:
    """Signed units as the decimal string v20 expects (no exponent)."""
    if not math.isfinite(quantity) or quantity == 0:
        raise BrokerError(f"an order needs a non-zero, finite quantity; got {quantity!r}")
    quantity = float(quantity)  # an int is a float to the type checker, not at run time
    if quantity.is_integer():
        return str(int(quantity))
    return format(Decimal(repr(quantity)), "f")


# --- answers ----------------------------------------------------------------------------------


def _order_view(
    client_id: str,
    symbol: str,
    quantity: float,
    *,
    broker_id: str,
    fill: Json | None,
    cancel: Json | None,
    working: bool,
) -> BrokerOrder:
    """The order given its fill and cancel transactions (either may be missing)."""
    filled = float(fill["units"]) if fill else 0.0
    price = float(fill.get("fullVWAP") or fill["price"]) if fill and filled else math.nan
    commission = abs(float(fill.get("commission") or 0.0)) if fill else 0.0
    reason = str(cancel.get("reason") or "CANCELLED") if cancel else ""
    if working:
        status = OrderStatus.PENDING
    elif abs(filled) >= abs(quantity) - _UNITS_TOLERANCE:
        status = OrderStatus.FILLED
    elif filled != 0 or reason == _CLIENT_REQUEST:
        status = OrderStatus.CANCELLED
        reason = reason or "the unfilled rest was cancelled"
    else:
        status = OrderStatus.REJECTED
        reason = reason or "OANDA finished the order without a fill"
    return BrokerOrder(
        client_id, symbol, quantity, status, filled, price, commission, broker_id, reason
    )


def _json(response: httpx.Response) -> Json:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _body(response: httpx.Response, what: str) -> Json:
    """The JSON object of a successful answer; BrokerError for any other."""
    if not response.is_success:
        raise BrokerError(
            f"OANDA refused {what} (HTTP {response.status_code}): {_message(response)}"
        )
    body = _json(response)
    if not body:
        raise BrokerError(f"OANDA answered {what} with no JSON object: {response.text[:200]!r}")
    return body


def _message(response: httpx.Response) -> str:
    body = _json(response)
    parts = [str(body[key]) for key in ("errorCode", "errorMessage") if body.get(key)]
    return ": ".join(parts) or response.text[:200] or response.reason_phrase


def _reading(what: str) -> contextlib.AbstractContextManager[None]:
    """Turn a missing or malformed field in OANDA's answer into a BrokerError."""
    return reading("OANDA", "v20 API", what)


def _log_order(order: BrokerOrder) -> None:
    log.info(
        "oanda order %s (%s) %s %s: %s, filled %s at %s, commission %s%s",
        order.client_id,
        order.broker_id,
        order.symbol,
        order.quantity,
        order.status.value,
        order.filled_quantity,
        order.average_price,
        order.commission,
        f", reason {order.reason}" if order.reason else "",
    )
