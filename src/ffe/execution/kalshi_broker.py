"""Binary contracts on Kalshi through its trade API v2, behind the ``Broker`` protocol.

The demo environment by default: production trades real money, so it takes
``environment="production"`` *and* ``live=True``. Every request is signed (see
``kalshi_auth``). Symbols are market tickers; quantities are whole contracts, signed in YES
terms (+5 buys five YES, -5 sells five YES, which opens a NO position when none is held);
prices are YES prices in [0, 1] (Kalshi's cents divided by 100).

An order is a limit order at the reference price moved ``price_bound`` against us (a market
order with a worst price), immediate-or-cancel by default, so Kalshi may fill part of it and
cancel the rest; ``good_till_canceled`` leaves the rest resting. Each order carries the
agent's client id as its ``client_order_id``: a repeated id is refused by Kalshi (409) and
``submit`` looks it up, which makes it idempotent.

Requests keep to the account's rate limits (reads and writes per second). 429 (after its
Retry-After), 5xx, connection failures and timeouts are retried with exponential backoff,
then raise ``TemporaryBrokerError``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from ffe.domain.contracts import BinaryContract
from ffe.domain.errors import BrokerError, ConfigError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import AccountSnapshot, BrokerOrder
from ffe.execution.kalshi_auth import KalshiSigner
from ffe.execution.kalshi_wire import (
    Json,
    Throttle,
    contract_of,
    count_of,
    error_message,
    json_object,
    limit_cents,
    order_view,
    orderbook_of,
    reading,
    whole_contracts,
)
from ffe.execution.venue_http import RetryableError, send

log = logging.getLogger(__name__)

DEMO_URL: Final = "https://demo-api.kalshi.co/trade-api/v2"
PRODUCTION_URL: Final = "https://api.elections.kalshi.com/trade-api/v2"
PRODUCTION_HOSTS: Final = frozenset(
    {"api.elections.kalshi.com", "external-api.kalshi.com", "trading-api.kalshi.com"}
)
TIMES_IN_FORCE: Final = ("immediate_or_cancel", "good_till_canceled", "fill_or_kill")
MAX_CLIENT_ID: Final = 64
_PAGE: Final = 200


class KalshiBroker:
    """Orders, positions and cash on a Kalshi account, the demo one unless told otherwise."""

    name = "kalshi"
    durable = True

    def __init__(
        self,
        key_id: str,
        private_key_pem: bytes,
        *,
        environment: str = "demo",
        live: bool = False,
        base_url: str | None = None,
        time_in_force: str = "immediate_or_cancel",
        price_bound: float = 0.05,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        reads_per_s: float = 20.0,
        writes_per_s: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``key_id`` and ``private_key_pem`` are the API key's id and PEM private key.
        ``environment`` is ``demo`` or ``production``; production also needs ``live=True``.
        ``base_url`` replaces the environment's address (tests use a local server).
        ``price_bound`` is how far past the reference price (in [0, 1] units) an order may
        fill. Requests are retried ``max_retries`` times after ``backoff_s``, doubling up to
        ``max_backoff_s``, and spaced to ``reads_per_s`` and ``writes_per_s`` (Kalshi's basic
        tier allows 20 and 10). ``clock`` stamps signatures (seconds since the epoch)."""
        self._url = _base_url(environment, live, base_url)
        _check_settings(time_in_force, price_bound, timeout_s, max_retries, backoff_s)
        self._signer = KalshiSigner(key_id, private_key_pem, clock or time.time)
        self._path_prefix = urlsplit(self._url).path.rstrip("/")
        self._time_in_force = time_in_force
        self._price_bound = price_bound
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._reads = Throttle(reads_per_s)
        self._writes = Throttle(writes_per_s)
        self._cancelled: set[str] = set()  # client ids whose cancel we asked for
        self._client = httpx.AsyncClient(timeout=timeout_s)
        log.info("kalshi broker with key %s at %s", key_id, self._url)

    @property
    def base_url(self) -> str:
        return self._url

    # --- the Broker protocol ----------------------------------------------------------------

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        """Send a limit order for ``quantity`` contracts (signed, YES terms) of the market
        ``symbol``, priced at ``reference_price`` (the YES price, in (0, 1)) moved
        ``price_bound`` against us and clipped to 1..99 cents."""
        request = self._order_request(client_id, symbol, quantity, reference_price)
        attempt = 0
        while True:
            # Before every attempt, not only the first: a failed POST may have placed it.
            known = await self.order(client_id, symbol)
            if known is not None:
                log.info(
                    "kalshi order %s already known (%s): nothing sent",
                    client_id,
                    known.status.value,
                )
                return known
            try:
                response = await self._attempt("POST", "/portfolio/orders", body=request)
            except RetryableError as failure:
                await self._after_failure(attempt, failure, f"submit of order {client_id}")
                attempt += 1
                continue
            placed = await self._placed(response, client_id, symbol, quantity)
            log.info(
                "kalshi order %s (%s) %s %s: %s, filled %s at %s, fees %s %s",
                placed.client_id, placed.broker_id, placed.symbol, placed.quantity,
                placed.status.value, placed.filled_quantity, placed.average_price,
                placed.commission, placed.reason,
            )  # fmt: skip
            return placed

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        """The order with this client id in market ``symbol`` (Kalshi looks orders up by its
        own id only, so this reads the market's orders), or None."""
        _check_client_id(client_id)
        raw = await self._find(client_id, symbol)
        return None if raw is None else await self._view(raw)

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        current = await self.order(client_id, symbol)
        if current is None or current.done or current.broker_id is None:
            return current
        self._cancelled.add(client_id)
        response = await self._call("DELETE", f"/portfolio/orders/{quote(current.broker_id)}")
        if response.status_code != 404:  # 404: it finished meanwhile; read what became of it
            _body(response, f"cancel of order {client_id}")
        log.info("kalshi order %s: cancel sent", client_id)
        return await self.order(client_id, symbol)

    async def open_orders(self) -> list[BrokerOrder]:
        """Resting orders that carry a client id (orders placed by hand may not)."""
        working = []
        for raw in await self._pages("/portfolio/orders", "orders", {"status": "resting"}):
            with reading("GET orders"):
                if raw.get("client_order_id"):
                    working.append(await self._view(raw))
        return working

    async def account(self) -> AccountSnapshot:
        """The cash balance and the net contracts held per market (negative: NO contracts)."""
        balance = await self._get("/portfolio/balance")
        rows = await self._pages("/portfolio/positions", "market_positions", {})
        with reading("GET balance and positions"):
            cash = float(balance["balance"]) / 100.0
            positions = {}
            for raw in rows:
                net = count_of(raw, "position")
                if net != 0:
                    positions[str(raw["ticker"])] = net
        return AccountSnapshot(cash, positions)

    async def close(self) -> None:
        await self._client.aclose()

    # --- markets ----------------------------------------------------------------------------

    async def market(self, symbol: str) -> BinaryContract:
        """The market's event, expiry, status and (once determined) result."""
        body = await self._get(f"/markets/{quote(symbol, safe='')}")
        with reading("GET market"):
            return contract_of(body["market"])

    async def orderbook(self, symbol: str) -> dict[str, list[tuple[float, float]]]:
        """Resting bids on each side, ``{"yes": [(price, contracts), ...], "no": [...]}``,
        prices in [0, 1] (a NO bid at p is a YES ask at 1 - p)."""
        body = await self._get(f"/markets/{quote(symbol, safe='')}/orderbook")
        with reading("GET orderbook"):
            return orderbook_of(body)

    async def settlements(self) -> list[Json]:
        """The account's settled markets as Kalshi reports them (ticker, market_result,
        yes_count, no_count, revenue in cents, settled_time)."""
        return await self._pages("/portfolio/settlements", "settlements", {})

    async def wait(
        self, client_id: str, symbol: str, timeout_s: float = 30.0, poll_s: float = 1.0
    ) -> BrokerOrder:
        """Ask every ``poll_s`` until the order is done or ``timeout_s`` has passed; return it
        as last seen. BrokerError if Kalshi has no such order."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            current = await self.order(client_id, symbol)
            if current is None:
                raise BrokerError(f"Kalshi has no order with client id {client_id!r} in {symbol}")
            left = deadline - loop.time()
            if current.done or left <= 0:
                return current
            await asyncio.sleep(min(poll_s, left))

    # --- orders -----------------------------------------------------------------------------

    def _order_request(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> Json:
        _check_client_id(client_id)
        count = whole_contracts(quantity)
        buy = quantity > 0
        return {
            "ticker": symbol,
            "client_order_id": client_id,
            "side": "yes",
            "action": "buy" if buy else "sell",
            "count": count,
            "type": "limit",
            "yes_price": limit_cents(reference_price, self._price_bound, buy=buy),
            "time_in_force": self._time_in_force,
        }

    async def _placed(
        self, response: httpx.Response, client_id: str, symbol: str, quantity: float
    ) -> BrokerOrder:
        status = response.status_code
        if status == 409:  # the client id is taken: another submit of it got there first
            known = await self.order(client_id, symbol)
            if known is not None:
                return known
        if status in (400, 404, 409):
            reason = error_message(response)
            return BrokerOrder(client_id, symbol, quantity, OrderStatus.REJECTED, reason=reason)
        body = _body(response, f"submit of order {client_id}")
        with reading("POST orders"):
            return await self._view(body["order"])

    async def _view(self, raw: Json) -> BrokerOrder:
        """A Kalshi order with the volume-weighted price of its fills."""
        with reading("an order"):
            order_id = str(raw["order_id"])
            filled = count_of(raw, "fill_count")
        fills = (
            await self._pages("/portfolio/fills", "fills", {"order_id": order_id}) if filled else []
        )
        client_id = str(raw.get("client_order_id") or "")
        with reading("an order and its fills"):
            return order_view(raw, fills, asked_cancel=client_id in self._cancelled)

    async def _find(self, client_id: str, symbol: str) -> Json | None:
        for raw in await self._pages("/portfolio/orders", "orders", {"ticker": symbol}):
            if isinstance(raw, dict) and raw.get("client_order_id") == client_id:
                return raw
        return None

    # --- HTTP -------------------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Json:
        return _body(await self._call("GET", path, params), f"GET {path}")

    async def _pages(self, path: str, key: str, params: dict[str, Any]) -> list[Json]:
        """Every item of a cursor-paged list."""
        items: list[Json] = []
        query = {**params, "limit": _PAGE}
        while True:
            body = await self._get(path, query)
            with reading(f"GET {path}"):
                page = body[key] or []
                if not isinstance(page, list):
                    raise TypeError(f"{key} is {type(page).__name__}, not a list")
                items.extend(page)
                cursor = body.get("cursor") or ""
            if not cursor or not page:
                return items
            query["cursor"] = cursor

    async def _call(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """One request, retried on 429, 5xx, connection failures and timeouts."""
        attempt = 0
        while True:
            try:
                return await self._attempt(method, path, params=params)
            except RetryableError as failure:
                await self._after_failure(attempt, failure, f"{method} {path}")
            attempt += 1

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Json | None = None,
    ) -> httpx.Response:
        what = f"{method} {path}"
        full_path = self._path_prefix + path
        await (self._reads if method == "GET" else self._writes).wait()
        headers = self._signer.headers(method, full_path)
        return await send(
            self._client,
            method,
            self._url + path,
            venue="Kalshi",
            what=what,
            refused=lambda response: (
                f"{error_message(response)}): check kalshi.key_id and the private key file "
                "(they must be one API key, made in the environment base_url points to), and "
                "that this machine's clock is right"
            ),
            params=params,
            json=body,
            headers=headers,
        )

    async def _after_failure(self, attempt: int, failure: RetryableError, what: str) -> None:
        """Wait before the next attempt, or raise once the retries are spent."""
        if attempt >= self._max_retries:
            raise TemporaryBrokerError(
                f"Kalshi {what} failed {attempt + 1} times (last: {failure.failure}); retry "
                "later (an order's client id finds it again if it was placed)"
            ) from failure
        delay = failure.retry_after
        if delay is None:
            delay = min(self._backoff_s * 2**attempt, self._max_backoff_s)
        log.warning(
            "kalshi %s: %s; retry %d of %d in %.2fs",
            what, failure.failure, attempt + 1, self._max_retries, delay,
        )  # fmt: skip
        await asyncio.sleep(delay)


# --- settings ---------------------------------------------------------------------------------


def _base_url(environment: str, live: bool, base_url: str | None) -> str:
    if environment not in ("demo", "production"):
        raise ConfigError(f"unknown Kalshi environment {environment!r}: use 'demo' or 'production'")
    url = base_url or (PRODUCTION_URL if environment == "production" else DEMO_URL)
    goes_live = urlsplit(url).hostname in PRODUCTION_HOSTS
    if goes_live and not live:
        raise ConfigError(
            "Kalshi production trades real money: set kalshi.environment: production, "
            "agent.live: true and pass --live to use it; the default is the demo environment"
        )
    if live and not goes_live:
        raise ConfigError(
            f"live=True but the broker would trade on {url}: set environment='production' "
            "(or leave live at False for the demo environment)"
        )
    return url.rstrip("/")


def _check_settings(
    time_in_force: str, price_bound: float, timeout_s: float, max_retries: int, backoff_s: float
) -> None:
    if time_in_force not in TIMES_IN_FORCE:
        raise ConfigError(
            f"time_in_force {time_in_force!r} is not one of {', '.join(TIMES_IN_FORCE)}"
        )
    if not (math.isfinite(price_bound) and 0 <= price_bound < 1):
        raise ConfigError(
            f"price_bound must lie in [0, 1) (a YES price distance); got {price_bound}"
        )
    if not timeout_s > 0 or max_retries < 0 or backoff_s < 0:
        raise ConfigError(
            "timeout_s must be positive, max_retries and backoff_s zero or more; got "
            f"{timeout_s}, {max_retries}, {backoff_s}"
        )


def _check_client_id(client_id: str) -> None:
    if not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise BrokerError(
            f"client id {client_id[:40]!r} has {len(client_id)} characters: use 1 to "
            f"{MAX_CLIENT_ID} for a Kalshi client_order_id"
        )


def _body(response: httpx.Response, what: str) -> Json:
    """The JSON object of a successful answer; BrokerError for any other."""
    if not response.is_success:
        raise BrokerError(
            f"Kalshi refused {what} (HTTP {response.status_code}): {error_message(response)}"
        )
    body = json_object(response)
    if body is None:
        raise BrokerError(f"Kalshi answered {what} with no JSON object: {response.text[:200]!r}")
    return body
