"""A broker behind a circuit breaker, so an unreachable venue is not hammered with calls.

``GuardedBroker`` wraps any ``Broker`` and is one itself. Before each call it asks the
breaker; while the circuit is open the call is refused with ``BrokerCircuitOpenError`` and
never reaches the venue. What counts:

- ``TemporaryBrokerError``, timeouts and connection errors are failures: the venue is
  unavailable. Enough of them within the breaker's window open the circuit.
- Any answer is a success, and that includes a non-temporary ``BrokerError`` (bad
  credentials, a malformed request): the venue answered, so it is reachable. Counting those as
  failures would let one malformed order lock the agent out of the cancels and closing orders
  it needs; a ``BrokerError`` already tells the agent to stop and inspect.
- Anything else (a bug in an adapter, a cancelled task) is not counted either way. A
  half-open probe that ends like that is retried after another cooldown.

``close()`` is never refused: releasing connections must always be possible.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ffe.domain.errors import BrokerError, TemporaryBrokerError
from ffe.execution.broker import AccountSnapshot, Broker, BrokerOrder
from ffe.risk.breaker import CircuitBreaker, CircuitOpenError

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# TimeoutError covers asyncio's timeouts too (the same class since Python 3.11).
_UNAVAILABLE: tuple[type[Exception], ...] = (TemporaryBrokerError, TimeoutError, ConnectionError)


class BrokerCircuitOpenError(CircuitOpenError, TemporaryBrokerError):
    """The broker's circuit is open and the call was not sent. Also a TemporaryBrokerError,
    so code written against the Broker protocol retries later, as for any outage."""


class GuardedBroker:
    """Any Broker, with every call but ``close`` passed through a CircuitBreaker."""

    def __init__(self, broker: Broker, breaker: CircuitBreaker) -> None:
        self._broker = broker
        self._breaker = breaker

    @property
    def name(self) -> str:
        return self._broker.name

    @property
    def durable(self) -> bool:
        return self._broker.durable

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker, for status (``state``, ``retry_in()``) in health checks and the API."""
        return self._breaker

    @property
    def wrapped(self) -> Broker:
        """The broker behind the breaker."""
        return self._broker

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        return await self._call(self._broker.submit, client_id, symbol, quantity, reference_price)

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        return await self._call(self._broker.order, client_id, symbol)

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        return await self._call(self._broker.cancel, client_id, symbol)

    async def open_orders(self) -> list[BrokerOrder]:
        return await self._call(self._broker.open_orders)

    async def account(self) -> AccountSnapshot:
        return await self._call(self._broker.account)

    async def close(self) -> None:
        await self._broker.close()

    async def _call(
        self, method: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        # The method is called only once the breaker allows it: a coroutine created and then
        # refused would never be awaited.
        breaker = self._breaker
        if not breaker.allow():
            raise BrokerCircuitOpenError(f"broker {self.name}", breaker.retry_in())
        try:
            result = await method(*args, **kwargs)
        except _UNAVAILABLE as exc:
            self._failed(exc)
            raise
        except BrokerError:
            breaker.record_success()  # an answer: the venue is reachable (see the module doc)
            raise
        breaker.record_success()
        return result

    def _failed(self, exc: Exception) -> None:
        breaker = self._breaker
        was_open = breaker.state == "open"
        breaker.record_failure()
        if not was_open and breaker.state == "open":
            log.warning(
                "broker %s unavailable (%s: %s): circuit open, next attempt in %.0fs",
                self.name,
                type(exc).__name__,
                exc,
                breaker.retry_in(),
            )
        else:
            log.info("broker %s call failed: %s: %s", self.name, type(exc).__name__, exc)
