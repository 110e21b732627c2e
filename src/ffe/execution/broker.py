"""What the agent asks of a broker: the ``Broker`` protocol and the values it trades in.

Every adapter (the paper broker, ccxt exchanges, Oanda) speaks this one protocol, so the agent
loop does not know which venue it trades on. Orders are market orders identified by the
client id the agent gives them; submitting a client id the broker already knows returns that
order instead of placing a second one, which is what makes a restart safe.

Errors: a venue refusing an order (insufficient funds, unknown instrument, market closed) is
not an exception: the order comes back ``REJECTED`` with the venue's reason. A venue that
cannot be reached or answers 429/5xx after the adapter's retries raises
``TemporaryBrokerError``; bad credentials or a malformed request raise ``BrokerError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ffe.domain.orders import OrderStatus


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """A broker's view of one order, as of the last time it was asked.

    ``status`` is ``PENDING`` while any quantity is still working (including a partial fill),
    ``FILLED`` when all of it executed, ``CANCELLED`` or ``REJECTED`` when the rest will not
    (a cancelled order may still carry a partial fill). Quantities are signed (positive buys);
    ``average_price`` is the volume-weighted price of what filled (NaN before any fill), and
    ``commission`` the fees paid on it so far, in the account currency.
    """

    client_id: str
    symbol: str
    quantity: float
    status: OrderStatus = OrderStatus.PENDING
    filled_quantity: float = 0.0
    average_price: float = math.nan
    commission: float = 0.0
    broker_id: str | None = None
    reason: str = ""

    @property
    def remaining(self) -> float:
        """Signed quantity still working (zero once the order is done)."""
        if self.status is not OrderStatus.PENDING:
            return 0.0
        return self.quantity - self.filled_quantity

    @property
    def done(self) -> bool:
        return self.status is not OrderStatus.PENDING


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Cash (in the account currency) and signed positions by symbol, as the broker sees them."""

    cash: float
    positions: Mapping[str, float] = field(default_factory=dict)


class Broker(Protocol):
    """A venue the agent trades on. Every method may raise ``TemporaryBrokerError`` (retry
    later) or ``BrokerError`` (stop and inspect)."""

    @property
    def name(self) -> str:
        """Short label for logs and the journal, e.g. ``paper``, ``ccxt:binance``, ``oanda``."""
        ...

    @property
    def durable(self) -> bool:
        """True when the venue keeps its own orders and positions (real brokers): the agent
        journals an order before sending it. False when the broker's state is rebuilt from the
        journal (the paper broker)."""
        ...

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        """Send a market order for ``quantity`` (signed) of ``symbol``. ``reference_price`` is
        the price the agent sized the order at (for venues that need a notional or a price
        bound). Idempotent by ``client_id``: if the venue already has an order with that id,
        return it as it stands and send nothing."""
        ...

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        """The order with this client id as it stands now, or None if the venue has none."""
        ...

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        """Cancel what is still working of the order; return it as it stands afterwards
        (None if the venue has no such order). Cancelling a finished order changes nothing."""
        ...

    async def open_orders(self) -> list[BrokerOrder]:
        """Every order still working on the account."""
        ...

    async def account(self) -> AccountSnapshot:
        """Cash and positions now."""
        ...

    async def close(self) -> None:
        """Release connections. The broker is not used afterwards."""
        ...
