"""Binary markets settling under a paper agent.

A Kalshi market that reaches its close with a result settles: the paper broker cancels its
working orders and closes the position at 1 (yes) or 0 (no). The agent books that like a
fill, commission free, under the client id ``<run>-settle-<ticker>``: the ledger closes the
position into a trade, the journal records the fill (so a restart rebuilds the same cash and
positions from the journal) and the cancelled orders. A venue (``agent.broker: kalshi``)
settles on its side: the agent does not book it here.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from ffe.domain.contracts import BinaryContract, Settlement
from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import Broker, BrokerOrder
from ffe.execution.paper import PaperBroker

log = logging.getLogger(__name__)


class Core(Protocol):
    """What settling needs of the agent's step (``ffe.agent.step.StepCore``)."""

    broker: Broker
    market: MarketData
    prefix: str
    contracts: dict[str, BinaryContract]
    index: dict[str, int]
    working: dict[str, BrokerOrder]

    def book(self, bar: int, order: BrokerOrder) -> None: ...

    def apply_fill(
        self, bar: int, order: BrokerOrder, qty: float, price: float, fee: float
    ) -> None: ...


async def settle_expired(core: Core, bar: int) -> list[Settlement]:
    """Settle, at bar ``bar``, every market of ``core.contracts`` whose close has come by the
    bar's end; each is settled once."""
    broker = core.broker
    if not core.contracts or not isinstance(broker, PaperBroker):
        return []
    market = core.market
    bar_end = market.time_of(bar) + timedelta(seconds=market.timeframe.seconds)
    settled = []
    for symbol in sorted(core.contracts):
        contract = core.contracts[symbol]
        price = contract.settled_by(bar_end)
        if price is None or symbol not in core.index:
            continue
        del core.contracts[symbol]
        for client_id, order in list(core.working.items()):
            if order.symbol == symbol:
                cancelled = await broker.cancel(client_id, symbol)
                if cancelled is not None:
                    core.book(bar, cancelled)
        settlement = broker.settle(symbol, price)
        if settlement is None:
            continue
        quantity = -settlement.quantity
        client_id = f"{core.prefix}-settle-{symbol}"
        fill = BrokerOrder(
            client_id, symbol, quantity, OrderStatus.FILLED, quantity, price, 0.0, client_id
        )
        core.apply_fill(bar, fill, quantity, price, 0.0)
        log.info("%s settled %s at bar %d: %s contracts", symbol, contract.result, bar, -quantity)
        settled.append(settlement)
    return settled
