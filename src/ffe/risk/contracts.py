"""Position limits for binary contracts (Kalshi markets), counted in contracts.

``max_contracts_per_market`` bounds the absolute position in one market; the per-event limit
bounds the sum of absolute positions over the markets of one event (the markets of one
question, such as the temperature brackets of one day, whose results depend on each other).
A market's event is given in ``events``; a market not listed there belongs to the event its
ticker names, by Kalshi's convention the part before its last ``-``
(``KXHIGHNY-26DEC08-B45`` is in ``KXHIGHNY-26DEC08``).

Set these limits only for an account that trades contracts: they count every position as
contracts. Like every check, they only see orders that add risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ffe.domain.errors import ConfigError
from ffe.domain.orders import Denied, OrderIntent
from ffe.risk.engine import AccountState


def event_of(symbol: str) -> str:
    """The event ticker of a Kalshi market ticker (the ticker itself when it has no ``-``)."""
    return symbol.rsplit("-", 1)[0]


@dataclass(frozen=True, slots=True)
class ContractLimits:
    """At most ``per_market`` contracts in a market and ``per_event`` over an event's
    markets (None disables either). ``events`` maps market tickers to event tickers."""

    per_market: int | None
    per_event: int | None
    events: tuple[tuple[str, str], ...] = ()
    name: str = "contract_limits"
    _events: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for limit in (self.per_market, self.per_event):
            if limit is not None and limit < 1:
                raise ConfigError(f"a contract limit must be at least 1; got {limit}")
        object.__setattr__(self, "_events", dict(self.events))

    def event(self, symbol: str) -> str:
        return self._events.get(symbol) or event_of(symbol)

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        symbol = intent.symbol
        after = abs(account.positions.get(symbol, 0.0) + intent.quantity)
        if self.per_market is not None and after > self.per_market:
            return Denied(
                intent,
                self.name,
                f"position in {symbol} would be {after:g} contracts, limit {self.per_market} "
                "per market (risk.max_contracts_per_market)",
            )
        if self.per_event is None:
            return None
        event = self.event(symbol)
        total = after + sum(
            abs(quantity)
            for other, quantity in account.positions.items()
            if other != symbol and self.event(other) == event
        )
        if total > self.per_event:
            return Denied(
                intent,
                self.name,
                f"positions in event {event} would be {total:g} contracts, limit "
                f"{self.per_event} per event (risk.max_contracts_per_event)",
            )
        return None

    def __reduce__(
        self,
    ) -> tuple[
        type[ContractLimits], tuple[int | None, int | None, tuple[tuple[str, str], ...], str]
    ]:
        return type(self), (self.per_market, self.per_event, self.events, self.name)
