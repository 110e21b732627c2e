"""The paper broker: the backtest's ``SimulatedBroker`` behind the ``Broker`` protocol.

The agent shows it each bar as the bar closes (``on_bar``); orders fill by the backtest's fill
model, at the next bar's open or at the deciding bar's close. Its state lives in the agent's
journal: after a restart the agent hands back the cash, positions and working orders it
journaled (``restore``), so nothing is filled twice or forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from ffe.domain.contracts import Settlement, check_probability
from ffe.domain.errors import BrokerError
from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import AccountSnapshot, BrokerOrder
from ffe.execution.fill_model import FillModel
from ffe.execution.simulated import SimOrder, SimulatedBroker

log = logging.getLogger(__name__)
_ZERO = 1e-12


class PaperBroker:
    """Simulated fills against the bars the agent has seen; cash and positions kept here."""

    name = "paper"
    durable = False

    def __init__(self, market: MarketData, fill: FillModel, cash: float) -> None:
        self._market = market
        self._fill = fill
        self._sim = SimulatedBroker(market, fill)
        self._index = {symbol: i for i, symbol in enumerate(market.symbols)}
        self._orders: dict[str, SimOrder] = {}
        self._working: dict[str, SimOrder] = {}  # not yet filled, refused or cancelled
        self._bar = -1
        self._settled: set[str] = set()  # binary markets settled: no more orders
        self.cash = cash
        self.positions: dict[str, float] = {}

    @property
    def bar(self) -> int:
        """The last bar shown to the broker (-1 before the first)."""
        return self._bar

    def restore(
        self,
        cash: float,
        positions: Mapping[str, float],
        working: Iterable[tuple[str, int, str, float]],
    ) -> None:
        """Take back the journal's state: cash, positions, and working orders as (client id,
        bar decided, symbol, quantity) in the order they were sent."""
        self.cash = cash
        self.positions = {s: q for s, q in positions.items() if abs(q) > _ZERO}
        for client_id, bar, symbol, quantity in working:
            order = self._sim.submit(client_id, bar, self._symbol(symbol), quantity)
            self._orders[client_id] = self._working[client_id] = order

    def on_bar(self, market: MarketData, bar: int) -> list[BrokerOrder]:
        """Bar ``bar`` of ``market`` has closed: fill what is due, return the filled orders."""
        if market is not self._market:
            self._market = market
            self._sim.reprice(market)
        self._bar = bar
        names = market.symbols
        delay = self._fill.delay
        due = [o for o in self._working.values() if o.bar + delay <= bar]
        for order in self._sim.fill_orders_due(bar):
            symbol = names[order.symbol]
            self.cash -= order.quantity * order.fill_price + order.commission
            after = self.positions.get(symbol, 0.0) + order.quantity
            if abs(after) < _ZERO:
                self.positions.pop(symbol, None)
            else:
                self.positions[symbol] = after
        for order in due:
            del self._working[order.client_id]
        return [_view(order, names) for order in due]  # filled, or refused with a reason

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        known = self._orders.get(client_id)
        if known is not None:
            return _view(known, self._market.symbols)
        if self._bar < 0:
            raise BrokerError("the paper broker has not seen a bar yet: call on_bar first")
        if symbol in self._settled:  # as a venue refuses orders in a closed market
            refused = SimOrder(client_id, self._bar, self._symbol(symbol), quantity)
            refused.status, refused.reason = OrderStatus.REJECTED, f"market {symbol} has settled"
            self._orders[client_id] = refused
            return _view(refused, self._market.symbols)
        order = self._sim.submit(client_id, self._bar, self._symbol(symbol), quantity)
        self._orders[client_id] = self._working[client_id] = order
        return _view(order, self._market.symbols)

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        known = self._orders.get(client_id)
        return None if known is None else _view(known, self._market.symbols)

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        self._sim.cancel(client_id, "cancelled")
        self._working.pop(client_id, None)
        return await self.order(client_id, symbol)

    async def open_orders(self) -> list[BrokerOrder]:
        names = self._market.symbols
        return [_view(o, names) for o in self._working.values()]

    async def account(self) -> AccountSnapshot:
        return AccountSnapshot(self.cash, dict(self.positions))

    async def close(self) -> None:
        return None

    def settle(self, symbol: str, price: float) -> Settlement | None:
        """The binary market ``symbol`` settled at ``price`` (1 or 0): cancel its working
        orders, close the position at that price without commission, credit the cash, and
        refuse its orders from now on. Returns the settlement (None when nothing was held),
        for the journal."""
        check_probability(price, f"the settlement price of {symbol}")
        self._settled.add(symbol)
        for order in [o for o in self._working.values() if o.symbol == self._symbol(symbol)]:
            self._sim.cancel(order.client_id, f"market {symbol} settled")
            del self._working[order.client_id]
        quantity = self.positions.pop(symbol, 0.0)
        if not quantity:
            return None
        self.cash += quantity * price
        time = self._market.time_of(max(self._bar, 0))
        log.info("paper %s settled at %s: %s contracts closed", symbol, price, quantity)
        return Settlement(symbol, time, quantity, price)

    def _symbol(self, symbol: str) -> int:
        index = self._index.get(symbol)
        if index is None:
            raise BrokerError(f"the paper broker has no bars for {symbol!r}")
        return index


def _view(order: SimOrder, names: tuple[str, ...]) -> BrokerOrder:
    filled = order.status is OrderStatus.FILLED
    return BrokerOrder(
        client_id=order.client_id,
        symbol=names[order.symbol],
        quantity=order.quantity,
        status=order.status,
        filled_quantity=order.quantity if filled else 0.0,
        average_price=order.fill_price,
        commission=order.commission,
        broker_id=order.client_id,
        reason=order.reason,
    )
