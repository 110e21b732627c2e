"""The broker behind a circuit breaker: failures open it, an open circuit keeps calls from the
venue, one probe after the cooldown closes or reopens it."""

from __future__ import annotations

import asyncio

import pytest
from tests.support.clock import FakeClock

from ffe.agent.guarded import BrokerCircuitOpenError, GuardedBroker
from ffe.domain.errors import BrokerError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.broker import AccountSnapshot, BrokerOrder
from ffe.risk.breaker import CircuitBreaker, CircuitOpenError

THRESHOLD, WINDOW_S, COOLDOWN_S = 3, 60.0, 30.0


class FlakyBroker:
    """Raises ``error`` on its next ``failures`` calls, then answers; counts every call."""

    name = "flaky"
    durable = True

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or TemporaryBrokerError("venue down")
        self.calls = 0
        self.closed = False
        self.gate: asyncio.Event | None = None  # when set, calls wait for it

    async def _answer(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise self.error

    async def submit(
        self, client_id: str, symbol: str, quantity: float, reference_price: float
    ) -> BrokerOrder:
        await self._answer()
        return BrokerOrder(client_id, symbol, quantity, OrderStatus.FILLED, quantity, 10.0)

    async def order(self, client_id: str, symbol: str) -> BrokerOrder | None:
        await self._answer()
        return None

    async def cancel(self, client_id: str, symbol: str) -> BrokerOrder | None:
        await self._answer()
        return None

    async def open_orders(self) -> list[BrokerOrder]:
        await self._answer()
        return []

    async def account(self) -> AccountSnapshot:
        await self._answer()
        return AccountSnapshot(cash=100.0)

    async def close(self) -> None:
        self.closed = True


def guarded(broker: FlakyBroker, clock: FakeClock) -> GuardedBroker:
    breaker = CircuitBreaker(
        failure_threshold=THRESHOLD,
        window_s=WINDOW_S,
        cooldown_s=COOLDOWN_S,
        clock=clock,
        name="broker",
    )
    return GuardedBroker(broker, breaker)


async def submit(broker: GuardedBroker) -> BrokerOrder:
    return await broker.submit("c1", "A", 1.0, 10.0)


async def fail_times(broker: GuardedBroker, times: int) -> None:
    for _ in range(times):
        with pytest.raises((TemporaryBrokerError, TimeoutError, ConnectionError)):
            await submit(broker)


async def opened(clock: FakeClock, fake: FlakyBroker | None = None) -> GuardedBroker:
    """A guarded broker whose circuit has just opened; ``fake`` answers from then on."""
    fake = fake or FlakyBroker()
    fake.failures = THRESHOLD
    broker = guarded(fake, clock)
    await fail_times(broker, THRESHOLD)
    return broker


async def test_submit_when_broker_fails_below_threshold_then_errors_reraised_circuit_closed():
    fake = FlakyBroker(failures=THRESHOLD - 1)
    broker = guarded(fake, FakeClock())

    await fail_times(broker, THRESHOLD - 1)

    assert broker.breaker.state == "closed"
    assert (await submit(broker)).status is OrderStatus.FILLED
    assert fake.calls == THRESHOLD


@pytest.mark.parametrize(
    "error",
    [TemporaryBrokerError("503"), TimeoutError("read timed out"), ConnectionError("reset")],
    ids=["temporary", "timeout", "connection"],
)
async def test_submit_when_broker_fails_threshold_times_in_window_then_circuit_opens(error):
    fake = FlakyBroker(failures=THRESHOLD, error=error)
    broker = guarded(fake, FakeClock())

    await fail_times(broker, THRESHOLD)

    assert broker.breaker.state == "open"
    assert fake.calls == THRESHOLD


async def test_submit_when_circuit_open_then_refused_without_reaching_broker():
    fake = FlakyBroker()
    broker = await opened(FakeClock(), fake)

    for _ in range(5):
        with pytest.raises(BrokerCircuitOpenError, match="circuit open") as refused:
            await submit(broker)

    assert fake.calls == THRESHOLD
    assert isinstance(refused.value, TemporaryBrokerError)  # callers retry as for any outage
    assert isinstance(refused.value, CircuitOpenError)
    assert refused.value.retry_in_s == pytest.approx(COOLDOWN_S)


@pytest.mark.parametrize("method", ["order", "cancel", "open_orders", "account"])
async def test_every_call_when_circuit_open_then_refused_without_reaching_broker(method):
    fake = FlakyBroker()
    broker = await opened(FakeClock(), fake)
    args = ("c1", "A") if method in ("order", "cancel") else ()

    with pytest.raises(BrokerCircuitOpenError):
        await getattr(broker, method)(*args)

    assert fake.calls == THRESHOLD


async def test_submit_when_cooldown_passed_then_probe_reaches_broker_and_success_closes():
    clock, fake = FakeClock(), FlakyBroker()
    broker = await opened(clock, fake)

    clock.advance(COOLDOWN_S)
    order = await submit(broker)

    assert order.status is OrderStatus.FILLED
    assert fake.calls == THRESHOLD + 1
    assert broker.breaker.state == "closed"
    await submit(broker)
    assert fake.calls == THRESHOLD + 2


async def test_submit_when_probe_fails_then_circuit_reopens_for_another_cooldown():
    clock, fake = FakeClock(), FlakyBroker()
    broker = await opened(clock, fake)
    clock.advance(COOLDOWN_S)
    fake.failures = 1

    await fail_times(broker, 1)

    assert broker.breaker.state == "open"
    with pytest.raises(BrokerCircuitOpenError):
        await submit(broker)
    assert fake.calls == THRESHOLD + 1


async def test_submit_when_probe_in_flight_then_second_call_refused():
    clock, fake = FakeClock(), FlakyBroker()
    broker = await opened(clock, fake)
    clock.advance(COOLDOWN_S)
    fake.gate = asyncio.Event()

    probe = asyncio.create_task(submit(broker))
    await asyncio.sleep(0)  # let the probe reach the broker
    with pytest.raises(BrokerCircuitOpenError):
        await asyncio.wait_for(submit(broker), timeout=1.0)  # refused, not left waiting
    fake.gate.set()
    await probe

    assert fake.calls == THRESHOLD + 1
    assert broker.breaker.state == "closed"


async def test_submit_when_broker_error_not_temporary_then_reraised_and_not_counted():
    fake = FlakyBroker(failures=THRESHOLD + 2, error=BrokerError("invalid API key"))
    broker = guarded(fake, FakeClock())

    for _ in range(THRESHOLD + 2):
        with pytest.raises(BrokerError, match="invalid API key"):
            await submit(broker)

    assert broker.breaker.state == "closed"
    assert fake.calls == THRESHOLD + 2


async def test_probe_when_broker_answers_with_error_then_circuit_closes():
    clock, fake = FakeClock(), FlakyBroker()
    broker = await opened(clock, fake)
    clock.advance(COOLDOWN_S)
    fake.failures, fake.error = 1, BrokerError("unknown instrument")

    with pytest.raises(BrokerError, match="unknown instrument"):
        await submit(broker)

    assert broker.breaker.state == "closed"


async def test_guarded_broker_when_circuit_open_then_close_still_reaches_broker():
    fake = FlakyBroker()
    broker = await opened(FakeClock(), fake)

    await broker.close()

    assert fake.closed


def test_guarded_broker_when_wrapping_then_name_and_durable_pass_through():
    fake = FlakyBroker()
    broker = guarded(fake, FakeClock())

    assert broker.name == "flaky"
    assert broker.durable is True
    assert broker.wrapped is fake
