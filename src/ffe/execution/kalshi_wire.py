"""Kalshi's wire format for ``KalshiBroker``: prices, counts, orders, markets and errors.

Kalshi quotes YES prices in cents (1..99) and, in newer fields, as dollar strings
(``yes_price_dollars: "0.5600"``); counts as integers and, newer, as strings
(``fill_count_fp: "10.00"``). The readers below take the newer field when it is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from ffe.domain.contracts import RESULTS, BinaryContract
from ffe.domain.errors import BrokerError, ConfigError
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import BrokerOrder
from ffe.execution.venue_http import reading as venue_reading

Json = dict[str, Any]

_WHOLE = 1e-9


class Throttle:
    """Spaces calls at least ``1 / per_second`` apart (no limit when ``per_second`` is 0)."""

    def __init__(self, per_second: float) -> None:
        if not (math.isfinite(per_second) and per_second >= 0):
            raise ConfigError(f"a rate limit must be zero (none) or positive; got {per_second}")
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


# --- requests ---------------------------------------------------------------------------------


def whole_contracts(quantity: float) -> int:
    """The number of contracts in a signed ``quantity``; BrokerError unless it is whole."""
    if not math.isfinite(quantity) or abs(quantity) < 1 - _WHOLE:
        raise BrokerError(f"a Kalshi order needs at least one contract; got {quantity!r}")
    count = round(abs(quantity))
    if abs(abs(quantity) - count) > _WHOLE:
        raise BrokerError(
            f"Kalshi trades whole contracts, not {quantity!r}: set backtest.lot_size to 1"
        )
    return count


def limit_cents(reference: float, bound: float, *, buy: bool) -> int:
    """The worst YES price in cents an order may fill at: ``reference`` (a YES price in
    (0, 1)) moved ``bound`` against us, rounded away from the reference, within 1..99."""
    if not (math.isfinite(reference) and 0 < reference < 1):
        raise BrokerError(
            f"a Kalshi order's reference price is a YES price in (0, 1); got {reference!r}"
        )
    price = (reference + bound if buy else reference - bound) * 100
    cents = math.ceil(price - _WHOLE) if buy else math.floor(price + _WHOLE)
    return min(max(cents, 1), 99)


# --- answers ----------------------------------------------------------------------------------


def count_of(raw: Json, name: str) -> float:
    """A contract count, from ``<name>_fp`` when present, else ``<name>``."""
    fixed = raw.get(f"{name}_fp")
    return float(fixed) if fixed not in (None, "") else float(raw[name])


def price_of(raw: Json, name: str) -> float:
    """A YES/NO price in [0, 1], from ``<name>_dollars`` or ``<name>_fixed`` (fills) when
    present, else cents."""
    for suffix in ("_dollars", "_fixed"):
        dollars = raw.get(name + suffix)
        if dollars not in (None, ""):
            return float(dollars)
    return float(raw[name]) / 100.0


def orderbook_of(body: Json) -> dict[str, list[tuple[float, float]]]:
    """The order book's YES and NO bids as (price in [0, 1], contracts), from
    ``orderbook_fp`` (dollar prices, fixed-point counts) when present, else the legacy
    ``orderbook`` (cents, integer counts)."""
    fixed = body.get("orderbook_fp")
    if isinstance(fixed, dict):
        return {
            side: [(float(p), float(q)) for p, q in fixed.get(f"{side}_dollars") or []]
            for side in RESULTS
        }
    book = body["orderbook"]
    return {
        side: [(float(p) / 100.0, float(q)) for p, q in book.get(side) or []] for side in RESULTS
    }


def _money(raw: Json, name: str) -> float:
    """An amount in dollars, from ``<name>_dollars`` when present, else cents (0 if absent)."""
    dollars = raw.get(f"{name}_dollars")
    if dollars not in (None, ""):
        return float(dollars)
    return float(raw.get(name) or 0) / 100.0


def yes_sign(side: str, action: str) -> int:
    """+1 when an order adds YES contracts (buy yes, sell no), -1 when it removes them."""
    if side not in RESULTS or action not in ("buy", "sell"):
        raise ValueError(f"side {side!r} / action {action!r} is not yes|no / buy|sell")
    return 1 if (side == "yes") == (action == "buy") else -1


def order_view(raw: Json, fills: Sequence[Json], *, asked_cancel: bool) -> BrokerOrder:
    """A Kalshi order, in YES terms, with the average YES price of ``fills``."""
    sign = yes_sign(str(raw["side"]), str(raw["action"]))
    quantity = sign * count_of(raw, "initial_count")
    filled = sign * count_of(raw, "fill_count")
    commission = _money(raw, "taker_fees") + _money(raw, "maker_fees")
    average = _average_yes_price(fills)
    state = str(raw["status"])
    reason = ""
    if state == "resting":
        status = OrderStatus.PENDING
    elif state == "executed":
        status = OrderStatus.FILLED
    elif state == "canceled" and (filled or asked_cancel):
        status = OrderStatus.CANCELLED
        reason = "cancelled on request" if asked_cancel else "the unfilled rest was cancelled"
    elif state == "canceled":
        status = OrderStatus.REJECTED
        reason = "nothing filled within the order's price bound"
    else:
        raise ValueError(f"unknown order status {state!r}")
    return BrokerOrder(
        str(raw["client_order_id"]),
        str(raw["ticker"]),
        quantity,
        status,
        filled,
        average,
        commission,
        str(raw["order_id"]),
        reason,
    )


def _average_yes_price(fills: Sequence[Json]) -> float:
    contracts = value = 0.0
    for fill in fills:
        count = count_of(fill, "count")
        contracts += count
        value += count * price_of(fill, "yes_price")
    return value / contracts if contracts else math.nan


def contract_of(raw: Json) -> BinaryContract:
    """A market (``GET /markets/{ticker}``) as a BinaryContract."""
    result = str(raw.get("result") or "") or None
    if result is not None and result not in RESULTS:
        raise ValueError(f"market result {result!r} is not yes, no or empty")
    close = raw.get("close_time")
    expiry = datetime.fromisoformat(str(close).replace("Z", "+00:00")) if close else None
    return BinaryContract(
        str(raw["ticker"]), str(raw["event_ticker"]), expiry, str(raw["status"]), result
    )


def json_object(response: httpx.Response) -> Json | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def error_message(response: httpx.Response) -> str:
    """Kalshi's error (``{"error": {"code", "message", "details"}}``) as one line."""
    body = json_object(response) or {}
    nested = body.get("error")
    error: Json = nested if isinstance(nested, dict) else body
    parts = [str(error[key]) for key in ("code", "message", "details") if error.get(key)]
    return ": ".join(parts) or response.text[:200] or response.reason_phrase


def reading(what: str) -> contextlib.AbstractContextManager[None]:
    """Turn a missing or malformed field in Kalshi's answer into a BrokerError."""
    return venue_reading("Kalshi", "trade API v2", what)
