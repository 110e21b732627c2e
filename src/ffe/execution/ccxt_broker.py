"""``CcxtBroker``: market orders on a spot crypto exchange through ccxt's async API.

Sandbox first: the exchange's testnet unless the caller passes ``sandbox=False`` *and*
``live=True``. Our client id travels as the exchange's client order id, and ``submit`` looks
it up before placing anything, so sending the same order twice (a retry, a restart) places it
once. Each attempt of a retried ``submit`` looks again before it places.

Errors, grouped as the ``Broker`` protocol asks:

- ccxt's ``OperationFailed`` family (429/418, 5xx, timeouts, connection errors, malformed
  answers) is retried with exponential backoff, honouring ``Retry-After`` when the exchange
  sends one on a rate-limit answer; after ``max_retries`` it becomes ``TemporaryBrokerError``.
- The venue refusing an order (insufficient funds, invalid order, unknown market, market
  closed) comes back as a ``REJECTED`` order with the venue's reason.
- Anything else from ccxt (authentication, permissions, bad requests) is ``BrokerError``.

Commission is reported in the quote currency: fees charged in the quote currency count as
they are, fees in the base currency are converted at the order's average fill price, and fees
in any other currency (BNB, say) are recorded as 0 and logged, since converting them would
need a price this broker does not have. Exchanges that return an order without its fills
(Binance's order query) cost one more request, for the order's trades, while it has fills.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors

from ffe.domain.errors import BrokerError, ConfigError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import AccountSnapshot, BrokerOrder

log = logging.getLogger(__name__)
T = TypeVar("T")

# ccxt options that keep an exchange to what a spot broker needs: Binance otherwise loads
# futures and margin markets and asks a private endpoint for currencies at start-up.
_EXCHANGE_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    },
}
# What each exchange accepts as a client order id, and how to say it to the user.
_CLIENT_ID_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "binance": (
        re.compile(r"[.A-Z:/a-z0-9_-]{1,36}"),
        "1 to 36 characters of A-Z a-z 0-9 . : / _ -",
    ),
}
_ANY_CLIENT_ID = (re.compile(r"[!-~]{1,64}"), "1 to 64 printable ASCII characters, no spaces")

# The venue refused the order itself: a REJECTED order, not an exception.
_REFUSALS: tuple[type[Exception], ...] = (
    ccxt_errors.InsufficientFunds,
    ccxt_errors.InvalidOrder,
    ccxt_errors.BadSymbol,
    ccxt_errors.OperationRejected,
)
# An order that is not working (any more) cannot be cancelled: look it up instead.
_NOT_CANCELLABLE: tuple[type[Exception], ...] = (
    ccxt_errors.InvalidOrder,
    ccxt_errors.OperationRejected,
)
_STATUS = {
    "open": OrderStatus.PENDING,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
}
_DUST = 1e-12


class CcxtBroker:
    """Spot market orders on a ccxt exchange, on its sandbox unless ``live=True``.

    ``symbols`` are the ccxt spot symbols this broker trades ("BTC/USDT"), all quoted in
    ``quote``; ``account()`` reports the quote balance as cash and each symbol's base balance
    as its position. ``options`` and ``exchange_config`` pass extra ccxt options and
    constructor settings through. ``api_base_url`` points every REST endpoint at another host;
    it exists for tests against a local fake exchange and has no use in production.
    """

    durable = True

    def __init__(
        self,
        exchange_id: str,
        *,
        api_key: str,
        secret: str,
        password: str | None = None,
        symbols: Sequence[str],
        quote: str = "USDT",
        sandbox: bool = True,
        live: bool = False,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
        options: Mapping[str, Any] | None = None,
        exchange_config: Mapping[str, Any] | None = None,
        api_base_url: str | None = None,
    ) -> None:
        _check_mode(sandbox, live)
        _check_numbers(max_retries, backoff_s, max_backoff_s, timeout_s)
        if not api_key or not secret:
            raise ConfigError(f"ccxt:{exchange_id} needs an api_key and a secret (sandbox too)")
        self._id = exchange_id
        self._quote = quote
        self._bases = _bases(symbols, quote)
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        config: dict[str, Any] = {
            "apiKey": api_key,
            "secret": secret,
            "enableRateLimit": True,
            "timeout": int(timeout_s * 1000),
            "options": {**_EXCHANGE_OPTIONS.get(exchange_id, {}), **(options or {})},
            **(exchange_config or {}),
        }
        if password is not None:
            config["password"] = password
        self._exchange = _make_exchange(exchange_id, config, sandbox, api_base_url)
        where = "sandbox" if sandbox else "LIVE account"
        log.log(logging.INFO if sandbox else logging.WARNING, "%s on the %s", self.name, where)

    @property
    def name(self) -> str:
        return f"ccxt:{self._id}"

    # -- the Broker protocol ------------------------------------------------------------

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        """Place a market order for ``quantity`` (signed) of ``symbol``, unless the exchange
        already has an order with this client id: then return that one and place nothing.
        Market orders are sized in the base currency, so ``reference_price`` is not sent."""
        self._check_client_id(client_id)
        refusal = self._refusal(symbol, quantity)
        if refusal:
            log.warning("order rejected %s %s: %s", client_id, symbol, refusal)
            return BrokerOrder(client_id, symbol, quantity, OrderStatus.REJECTED, reason=refusal)
        await self._load_markets()
        try:
            raw = await self._call(
                f"submit order {client_id}",
                lambda: self._find_or_place(client_id, symbol, quantity),
                passthrough=_REFUSALS,
            )
        except _REFUSALS as exc:
            reason = _reason(exc)
            log.warning("order rejected %s %s qty=%s: %s", client_id, symbol, quantity, reason)
            return BrokerOrder(client_id, symbol, quantity, OrderStatus.REJECTED, reason=reason)
        return await self._view(client_id, symbol, raw)

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        self._check_client_id(client_id)
        await self._load_markets()
        raw = await self._call(f"fetch order {client_id}", lambda: self._find(client_id, symbol))
        return None if raw is None else await self._view(client_id, symbol, raw)

    async def wait(
        self, client_id: str, symbol: str, timeout_s: float = 30.0, poll_s: float = 1.0
    ) -> BrokerOrder | None:
        """Poll the order every ``poll_s`` until it is done or ``timeout_s`` has passed;
        return its last state (None if the exchange does not know it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            order = await self.order(client_id, symbol)
            left = deadline - time.monotonic()
            if order is None or order.done or left <= 0:
                return order
            await asyncio.sleep(min(poll_s, left))

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        self._check_client_id(client_id)
        await self._load_markets()
        try:
            raw = await self._call(
                f"cancel order {client_id}",
                lambda: self._exchange.cancel_order("", symbol, {"clientOrderId": client_id}),
                passthrough=_NOT_CANCELLABLE,
            )
        except _NOT_CANCELLABLE as exc:
            log.info("order %s not cancellable (%s): looking it up", client_id, _reason(exc))
            return await self.order(client_id, symbol)
        log.info("order cancelled %s %s", client_id, symbol)
        if raw.get("status") is None or raw.get("filled") is None:
            return await self.order(client_id, symbol)  # a terse answer: ask for the order
        return await self._view(client_id, symbol, raw)

    async def open_orders(self) -> list[BrokerOrder]:
        """Orders still working on the configured symbols (one request per symbol)."""
        await self._load_markets()
        working: list[BrokerOrder] = []
        for symbol in self._bases:
            fetch = partial(self._exchange.fetch_open_orders, symbol)
            raws = await self._call(f"fetch open orders of {symbol}", fetch)
            for raw in raws:
                client_id = str(raw.get("clientOrderId") or raw.get("id"))
                working.append(await self._view(client_id, symbol, raw))
        return working

    async def account(self) -> AccountSnapshot:
        balance = await self._call("fetch balance", self._exchange.fetch_balance)
        totals: Mapping[str, Any] = balance.get("total") or {}
        held = {symbol: _number(totals.get(base)) for symbol, base in self._bases.items()}
        positions = {symbol: amount for symbol, amount in held.items() if abs(amount) > _DUST}
        return AccountSnapshot(_number(totals.get(self._quote)), positions)

    async def close(self) -> None:
        await self._exchange.close()

    # -- requests -------------------------------------------------------------------------

    async def _call(
        self,
        what: str,
        action: Callable[[], Awaitable[T]],
        passthrough: tuple[type[Exception], ...] = (),
    ) -> T:
        """Run ``action``, retrying what ccxt calls a failed operation; translate the rest.
        Exceptions in ``passthrough`` reach the caller as ccxt raised them."""
        attempt = 0
        while True:
            try:
                return await action()
            except passthrough:
                raise
            except ccxt_errors.OperationFailed as exc:
                delay = self._delay(attempt, exc)
                if attempt >= self._max_retries or delay > self._max_backoff_s:
                    raise self._gave_up(what, attempt + 1, delay, exc) from exc
                attempt += 1
                log.warning("%s: %s failed (%s); retry %d of %d in %.3fs", self.name, what,
                            type(exc).__name__, attempt, self._max_retries, delay)  # fmt: skip
                await asyncio.sleep(delay)
            except ccxt_errors.BaseError as exc:
                raise BrokerError(f"{self.name}: {what} failed: {_reason(exc)}") from exc

    def _gave_up(self, what: str, tries: int, delay: float, exc: Exception) -> TemporaryBrokerError:
        if delay > self._max_backoff_s:
            wait = f"asked to wait {delay:g}s, more than max_backoff_s={self._max_backoff_s:g}"
            return TemporaryBrokerError(f"{self.name}: {what} failed ({wait}): {_reason(exc)}")
        attempts = f"{tries} attempt{'s' if tries > 1 else ''}"
        return TemporaryBrokerError(f"{self.name}: {what} failed after {attempts}: {_reason(exc)}")

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Seconds before the next attempt: the exchange's Retry-After on a rate-limit
        answer, else exponential backoff capped at ``max_backoff_s``."""
        if isinstance(exc, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
            after = _retry_after(self._exchange.last_response_headers)
            if after is not None:
                return after
        return float(min(self._backoff_s * 2**attempt, self._max_backoff_s))

    async def _load_markets(self) -> None:
        if not self._exchange.markets:
            await self._call("load markets", self._exchange.load_markets)

    async def _find(self, client_id: str, symbol: str) -> dict[str, Any] | None:
        """The exchange's order with this client id, or None."""
        try:
            raw: dict[str, Any] = await self._exchange.fetch_order(
                "", symbol, {"clientOrderId": client_id}
            )
        except ccxt_errors.OrderNotFound:
            return None
        return raw

    async def _find_or_place(self, client_id: str, symbol: str, quantity: float) -> dict[str, Any]:
        existing = await self._find(client_id, symbol)
        if existing is not None:
            log.info("order %s already on %s: not sent again", client_id, self.name)
            return existing
        side = "buy" if quantity > 0 else "sell"
        try:
            raw: dict[str, Any] = await self._exchange.create_order(
                symbol, "market", side, abs(quantity), None, {"clientOrderId": client_id}
            )
        except ccxt_errors.InvalidOrder:
            # Binance answers a duplicate client id with a plain "invalid order": when the id
            # turns up after all (a concurrent submit), that order is the answer.
            existing = await self._find(client_id, symbol)
            if existing is None:
                raise
            return existing
        log.info("order sent %s %s %s qty=%s id=%s", client_id, symbol, side, abs(quantity),
                 raw.get("id"))  # fmt: skip
        return raw

    # -- translation ----------------------------------------------------------------------

    async def _view(self, client_id: str, symbol: str, raw: Mapping[str, Any]) -> BrokerOrder:
        """Our view of a ccxt order, with its fees fetched from its trades when the order
        came without them."""
        fees = _fees(raw)
        if (
            not fees
            and _number(raw.get("filled")) > 0
            and self._exchange.has.get("fetchOrderTrades")
        ):
            trades = await self._call(
                f"fetch trades of order {client_id}",
                lambda: self._exchange.fetch_order_trades(raw.get("id"), symbol),
            )
            fees = [fee for trade in trades for fee in _fees(trade)]
        order = _order(client_id, symbol, raw)
        commission = self._commission(client_id, symbol, fees, order.average_price)
        if commission:
            order = replace(order, commission=commission)
        return order

    def _commission(
        self, client_id: str, symbol: str, fees: Sequence[Mapping[str, Any]], price: float
    ) -> float:
        base = symbol.partition("/")[0]
        total = 0.0
        for fee in fees:
            cost, currency = _number(fee.get("cost")), fee.get("currency")
            if cost == 0 or currency == self._quote:
                total += cost
            elif currency == base and math.isfinite(price):
                total += cost * price
            else:
                log.warning("order %s: fee of %s %s not converted to %s; recorded as 0",
                            client_id, cost, currency, self._quote)  # fmt: skip
        return total

    def _check_client_id(self, client_id: str) -> None:
        pattern, rule = _CLIENT_ID_RULES.get(self._id, _ANY_CLIENT_ID)
        if not pattern.fullmatch(client_id):
            raise BrokerError(
                f"{self.name} does not accept the client order id {client_id!r}: it must be "
                f"{rule} (shorten or change the agent's order prefix)"
            )

    def _refusal(self, symbol: str, quantity: float) -> str:
        """Why the order cannot be sent at all, or ''."""
        if symbol not in self._bases:
            return f"{symbol} is not one of this broker's symbols ({', '.join(self._bases)})"
        if not math.isfinite(quantity) or quantity == 0:
            return f"quantity must be a non-zero number, got {quantity}"
        return ""


# -- construction helpers -------------------------------------------------------------------


def _check_mode(sandbox: bool, live: bool) -> None:
    if not sandbox and not live:
        raise ConfigError("sandbox=False trades real money: pass live=True as well to confirm")
    if sandbox and live:
        raise ConfigError("live=True needs sandbox=False (the sandbox is not live)")


def _check_numbers(
    max_retries: int, backoff_s: float, max_backoff_s: float, timeout: float
) -> None:
    if max_retries < 0:
        raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
    if backoff_s < 0 or max_backoff_s < backoff_s:
        raise ConfigError("backoff_s must be >= 0 and max_backoff_s >= backoff_s")
    if timeout <= 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout}")


def _bases(symbols: Sequence[str], quote: str) -> dict[str, str]:
    """Each symbol's base currency; every symbol must be BASE/QUOTE in ``quote``, one per base
    (two symbols on one base would report the same balance twice)."""
    if not symbols:
        raise ConfigError("name the symbols the broker trades, e.g. symbols=('BTC/USDT',)")
    bases: dict[str, str] = {}
    for symbol in symbols:
        base, _, their_quote = symbol.partition("/")
        if not base or their_quote != quote:
            raise ConfigError(f"symbol {symbol!r} must look like BASE/{quote} (quote={quote!r})")
        if base in bases.values():
            raise ConfigError(f"two symbols trade {base}: keep one per base currency")
        bases[symbol] = base
    return bases


def _make_exchange(
    exchange_id: str, config: dict[str, Any], sandbox: bool, api_base_url: str | None
) -> Any:
    if exchange_id not in ccxt_async.exchanges:
        raise ConfigError(f"ccxt has no exchange {exchange_id!r} (see ccxt.exchanges)")
    exchange = getattr(ccxt_async, exchange_id)(config)
    if sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt_errors.NotSupported as exc:
            raise ConfigError(f"ccxt has no sandbox for {exchange_id}: {exc}") from exc
    if api_base_url is not None:
        exchange.urls["api"] = _rehost(exchange.urls["api"], api_base_url)
    return exchange


def _rehost(urls: Any, base_url: str) -> Any:
    """``urls`` (a URL, or dicts of them) with scheme and host replaced by ``base_url``'s."""
    if isinstance(urls, dict):
        return {key: _rehost(value, base_url) for key, value in urls.items()}
    if not isinstance(urls, str):
        return urls
    base, url = urlsplit(base_url), urlsplit(urls)
    path = base.path.rstrip("/") + url.path
    return urlunsplit((base.scheme, base.netloc, path, url.query, url.fragment))


# -- translation helpers --------------------------------------------------------------------


def _order(client_id: str, symbol: str, raw: Mapping[str, Any]) -> BrokerOrder:
    sign = -1.0 if raw.get("side") == "sell" else 1.0
    amount, filled = _number(raw.get("amount")), _number(raw.get("filled"))
    status = _STATUS.get(str(raw.get("status")), OrderStatus.PENDING)
    reason = ""
    if status is OrderStatus.FILLED and filled < amount - _DUST:
        status, reason = OrderStatus.CANCELLED, "closed by the venue before it filled in full"
    elif status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        reason = f"{raw.get('status')} by the venue"
    average = _number(raw.get("average"), math.nan) if filled > 0 else math.nan
    broker_id = None if raw.get("id") is None else str(raw["id"])
    return BrokerOrder(
        client_id, symbol, sign * amount, status, sign * filled, average, 0.0, broker_id, reason
    )


def _fees(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A ccxt order's or trade's fees (``fees`` if it lists them, else its one ``fee``)."""
    fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
    return [fee for fee in fees if fee and fee.get("cost") is not None]


def _number(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header (seconds form), if the last answer had one."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            seconds = _number(value, -1.0)
            return seconds if seconds >= 0 else None
    return None


def _reason(exc: Exception) -> str:
    """ccxt's error class and message (which names the exchange and carries its answer)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
