"""The simulated broker: fills market orders against bars with the shared fill model.

Used by backtests and by the paper agent alike. Orders are identified by client ids, and the
broker works in bar positions so the backtest's hot loop stays cheap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution.fill_model import FillModel

log = logging.getLogger(__name__)


class SimFill(NamedTuple):
    """A fill in bar coordinates; the engine turns these into domain ``Fill``s on demand."""

    client_id: str
    bar: int
    symbol: int
    quantity: float
    price: float
    commission: float


@dataclass(slots=True, init=False)
class SimOrder:
    client_id: str
    bar: int  # bar of the decision
    symbol: int
    quantity: float
    status: OrderStatus = OrderStatus.PENDING
    reason: str = ""
    fill_price: float = math.nan  # set when filled, with the commission paid
    commission: float = 0.0

    # Written out, not generated: mypyc compiles this one (a dataclass's generated __init__
    # stays interpreted in the compiled build), and it runs once for every order.
    def __init__(
        self,
        client_id: str,
        bar: int,
        symbol: int,
        quantity: float,
        status: OrderStatus = OrderStatus.PENDING,
        reason: str = "",
        fill_price: float = math.nan,
        commission: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.bar = bar
        self.symbol = symbol
        self.quantity = quantity
        self.status = status
        self.reason = reason
        self.fill_price = fill_price
        self.commission = commission

    def __reduce__(self) -> tuple[type[SimOrder], tuple[object, ...]]:
        # Pickled through __init__, which a class compiled with mypyc needs.
        return type(self), (
            self.client_id,
            self.bar,
            self.symbol,
            self.quantity,
            self.status,
            self.reason,
            self.fill_price,
            self.commission,
        )


class SimulatedBroker:
    """Accepts market orders and fills them at the bar the fill model names."""

    def __init__(self, market: MarketData, fill_model: FillModel) -> None:
        self._model = fill_model
        self._slippage = fill_model.slippage_bps != 0.0  # read once: the model is frozen
        self._delay = fill_model.delay
        self._prices = market.open if fill_model.at == "next_open" else market.close
        self._n_bars = market.n_bars
        self._pending: list[SimOrder] = []
        self._next_due: int | None = None
        self.orders: list[SimOrder] = []

    def submit(self, client_id: str, bar: int, symbol: int, quantity: float) -> SimOrder:
        """Queue a market order decided at ``bar`` (bars never go back in time)."""
        if self._pending and bar < self._pending[-1].bar:
            raise ValueError(f"order {client_id} at bar {bar} is older than a pending order")
        order = SimOrder(client_id, bar, symbol, quantity)
        self.orders.append(order)
        self._pending.append(order)
        if self._next_due is None:
            self._next_due = bar + self._delay  # orders arrive in time order
        return order

    def next_fill_bar(self) -> int | None:
        """The earliest bar at which a pending order can fill, if any."""
        return self._next_due

    def fill_due(self, bar: int, on_fill: Callable[[SimFill], None]) -> None:
        """Fill every pending order due at or before ``bar``, in submission order, passing
        each fill to ``on_fill``; orders without a price to fill at are rejected."""
        delay = self._delay
        for order in self.fill_orders_due(bar):
            on_fill(
                SimFill(
                    order.client_id,
                    order.bar + delay,
                    order.symbol,
                    order.quantity,
                    order.fill_price,
                    order.commission,
                )
            )

    def fill_orders_due(self, bar: int) -> list[SimOrder]:
        """Fill every pending order due at or before ``bar`` and return the filled ones in
        submission order (each fills at its own due bar, with its fill price and commission
        set); orders without a price to fill at are rejected. The backtest books these
        directly: no fill record and no callback per order."""
        if self._next_due is None or self._next_due > bar:
            return []
        delay, pending = self._delay, self._pending
        if pending[-1].bar + delay <= bar:  # pending is in time order: all are due
            due, self._pending, self._next_due = pending, [], None
        else:
            due = [o for o in pending if o.bar + delay <= bar]
            self._pending = pending[len(due) :]
            self._next_due = self._pending[0].bar + delay
        # The fill itself is inlined: this loop runs once for every order of a backtest.
        model, prices, n_bars = self._model, self._prices, self._n_bars
        filled = []
        for order in due:
            fill_bar, quantity = order.bar + delay, order.quantity
            reference = prices.item(fill_bar, order.symbol) if fill_bar < n_bars else math.nan
            if not reference > 0:  # NaN (no bar left, or no bar for the symbol) or broken
                self._refuse(order, fill_bar)
                continue
            price = model.price(quantity, reference) if self._slippage else reference
            order.status, order.fill_price = OrderStatus.FILLED, price
            order.commission = model.fee(quantity, price)
            filled.append(order)
        return filled

    def reprice(self, market: MarketData) -> None:
        """Fill from ``market``'s prices from now on: the paper broker's market grows by a bar
        at a time, and only prices of bars already seen are ever read."""
        self._prices = market.open if self._model.at == "next_open" else market.close
        self._n_bars = market.n_bars

    def cancel(self, client_id: str, reason: str) -> SimOrder | None:
        """Cancel one pending order; None when no pending order has that id."""
        for k, order in enumerate(self._pending):
            if order.client_id == client_id:
                del self._pending[k]
                self._next_due = self._pending[0].bar + self._delay if self._pending else None
                order.status, order.reason = OrderStatus.CANCELLED, reason
                return order
        return None

    def cancel_all(self, reason: str) -> list[SimOrder]:
        """Cancel every pending order (end of data, emergency stop)."""
        cancelled = self._pending
        for order in cancelled:
            order.status, order.reason = OrderStatus.CANCELLED, reason
        self._pending, self._next_due = [], None
        return cancelled

    def _refuse(self, order: SimOrder, fill_bar: int) -> None:
        if fill_bar >= self._n_bars:
            order.status, order.reason = OrderStatus.CANCELLED, "no bar left to fill at"
            return
        order.status, order.reason = OrderStatus.REJECTED, "symbol has no bar to fill at"
        log.info("order rejected %s: no price at bar %d", order.client_id, fill_bar)
