"""Binary markets (Kalshi) settling under the agent.

A market settles once its close has come (by the bar's end) and its result is known: every
position in it closes at 1 (yes) or 0 (no). The agent books that like a fill, commission
free, under the client id ``<run>-settle-<ticker>``: the ledger closes the position into a
trade and the journal records the fill, so a restart rebuilds the same cash and positions.

- With the paper broker, the result is the one recorded with the market's bars: the broker
  cancels the market's working orders, closes its position and refuses its orders from then
  on, and the agent books the same.
- With a venue that reports results (``KalshiBroker.market``), the venue settles on its own
  side; the agent asks it for the result of each market past its close that the ledger still
  holds, once a bar until it is known, and books it. A failed question is asked again at the
  next bar.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from ffe.domain.contracts import BinaryContract, Settlement
from ffe.domain.errors import BrokerError
from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import Broker, BrokerOrder
from ffe.execution.paper import PaperBroker
from ffe.portfolio.ledger import Ledger

log = logging.getLogger(__name__)

MarketLookup = Callable[[str], Awaitable[BinaryContract]]


class Core(Protocol):
    """What settling needs of the agent's step (``ffe.agent.step.StepCore``)."""

    broker: Broker
    market: MarketData
    ledger: Ledger
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
    bar's end and whose result is known; each is settled once."""
    if not core.contracts:
        return []
    market = core.market
    bar_end = market.time_of(bar) + timedelta(seconds=market.timeframe.seconds)
    if isinstance(core.broker, PaperBroker):
        return await _paper(core, core.broker, bar, bar_end)
    lookup = _market_lookup(core.broker)
    return [] if lookup is None else await _venue(core, lookup, bar, bar_end)


async def _paper(core: Core, broker: PaperBroker, bar: int, bar_end: datetime) -> list[Settlement]:
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
        if settlement is not None:
            _book(core, bar, settlement, contract.result)
            settled.append(settlement)
    return settled


async def _venue(core: Core, lookup: MarketLookup, bar: int, bar_end: datetime) -> list[Settlement]:
    settled = []
    for symbol in sorted(core.contracts):
        contract = core.contracts[symbol]
        if contract.expiry is None or contract.expiry > bar_end or symbol not in core.index:
            continue
        held = core.ledger.position(core.index[symbol])
        if not held:
            continue  # nothing to settle (yet: an order may still fill before the venue closes)
        try:
            found = await lookup(symbol)
        except BrokerError as exc:
            log.warning("%s is past its close; its result could not be read: %s", symbol, exc)
            continue
        price = found.settlement_price
        if price is None:
            continue  # closed, not determined yet: ask again at the next bar
        del core.contracts[symbol]
        settlement = Settlement(symbol, bar_end, held, price)
        _book(core, bar, settlement, found.result)
        settled.append(settlement)
    return settled


def _market_lookup(broker: Broker) -> MarketLookup | None:
    """The venue's market lookup, behind a circuit breaker or not; None if it has none."""
    venue = getattr(broker, "wrapped", broker)
    lookup: MarketLookup | None = getattr(venue, "market", None)
    return lookup


def _book(core: Core, bar: int, settlement: Settlement, result: str | None) -> None:
    symbol, quantity, price = settlement.symbol, -settlement.quantity, settlement.price
    client_id = f"{core.prefix}-settle-{symbol}"
    fill = BrokerOrder(
        client_id, symbol, quantity, OrderStatus.FILLED, quantity, price, 0.0, client_id
    )
    core.apply_fill(bar, fill, quantity, price, 0.0)
    log.info("%s settled %s at bar %d: %s contracts closed", symbol, result, bar, -quantity)
