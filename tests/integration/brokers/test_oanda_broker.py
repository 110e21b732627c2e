"""OandaBroker against a local server speaking the v20 REST subset it uses
(tests/support/fake_oanda.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests.support.fake_oanda import (
    PENDING,
    FakeOanda,
    Fault,
    cancelled,
    partial,
)

from ffe.domain.errors import BrokerError, ConfigError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.oanda_broker import LIVE_URL, PRACTICE_URL, OandaBroker

BrokerFactory = Callable[..., OandaBroker]


@pytest.fixture
def fake() -> Iterator[FakeOanda]:
    server = FakeOanda()
    server.start()
    yield server
    server.stop()
    assert not server.errors, "\n".join(server.errors)


@pytest.fixture
async def make_broker(fake: FakeOanda) -> AsyncIterator[BrokerFactory]:
    """Brokers on the fake with tiny backoff; closed after the test."""
    made: list[OandaBroker] = []

    def make(**overrides: object) -> OandaBroker:
        settings: dict[str, object] = {
            "base_url": fake.url,
            "timeout_s": 2.0,
            "max_retries": 3,
            "backoff_s": 0.005,
            "max_backoff_s": 0.02,
        }
        settings.update(overrides)
        token = str(settings.pop("token", fake.token))
        account_id = str(settings.pop("account_id", fake.account_id))
        broker = OandaBroker(token, account_id, **settings)  # type: ignore[arg-type]
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> OandaBroker:
    return make_broker()


# --- fills and the account ----------------------------------------------------------------


async def test_buy_and_sell_fills_when_filled_then_reflected_in_account(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    buy = await broker.submit("buy-1", "EUR_USD", 1000, 1.1)
    sell = await broker.submit("sell-1", "EUR_USD", -300, 1.1)
    short = await broker.submit("sell-2", "USD_JPY", -500, 150.0)

    assert buy.status is OrderStatus.FILLED
    assert buy.filled_quantity == 1000
    assert buy.average_price == pytest.approx(1.1)
    assert buy.commission == pytest.approx(1000 * fake.commission_per_unit)
    assert sell.status is OrderStatus.FILLED
    assert sell.filled_quantity == -300
    assert short.filled_quantity == -500
    snapshot = await broker.account()
    assert snapshot.positions == {"EUR_USD": 700.0, "USD_JPY": -500.0}
    assert snapshot.cash == pytest.approx(100_000 - 1800 * fake.commission_per_unit)


async def test_submit_sends_v20_market_order_with_client_extensions(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    await broker.submit("abc-1", "EUR_USD", -25, 1.1)

    order = fake.by_client_id("abc-1")
    assert order is not None
    assert order["units"] == "-25"
    assert order["timeInForce"] == "IOC"
    assert order["positionFill"] == "DEFAULT"
    assert all(h["accept-datetime-format"] == "RFC3339" for h in fake.headers)
    assert all(h["authorization"] == f"Bearer {fake.token}" for h in fake.headers)


async def test_order_when_asked_later_then_read_from_order_state_and_fill_transaction(
    broker: OandaBroker,
) -> None:
    submitted = await broker.submit("later-1", "EUR_USD", 400, 1.1)

    looked_up = await broker.order("later-1", "EUR_USD")

    assert looked_up == submitted
    assert await broker.order("never-sent", "EUR_USD") is None


async def test_submit_when_partly_filled_then_cancelled_with_filled_part(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    fake.plan(partial(0.4))

    order = await broker.submit("part-1", "EUR_USD", 1000, 1.1)

    assert order.status is OrderStatus.CANCELLED
    assert order.filled_quantity == 400
    assert order.average_price == pytest.approx(1.1)
    assert order.reason == "INSUFFICIENT_LIQUIDITY"
    assert await broker.order("part-1", "EUR_USD") == order
    assert (await broker.account()).positions == {"EUR_USD": 400.0}


async def test_submit_when_cancelled_for_margin_then_rejected_with_reason(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    fake.plan(cancelled("INSUFFICIENT_MARGIN"))

    order = await broker.submit("big-1", "EUR_USD", 10_000_000, 1.1)

    assert order.status is OrderStatus.REJECTED
    assert order.reason == "INSUFFICIENT_MARGIN"
    assert order.filled_quantity == 0
    assert math.isnan(order.average_price)
    assert (await broker.order("big-1", "EUR_USD")) == order
    assert (await broker.account()).positions == {}


async def test_submit_when_instrument_unknown_then_rejected_from_400_body(
    broker: OandaBroker,
) -> None:
    order = await broker.submit("bad-1", "XAU_XYZ", 10, 1.0)

    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith("INSTRUMENT_UNKNOWN")


# --- idempotency and client ids -------------------------------------------------------------


async def test_submit_when_client_id_known_then_returned_and_nothing_placed(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    first = await make_broker().submit("same-1", "EUR_USD", 100, 1.1)

    # A restarted agent (a new broker) submits the same id again.
    again = await make_broker().submit("same-1", "EUR_USD", 100, 1.1)

    assert again == first
    assert fake.count("POST", "/orders") == 1
    assert len(fake.orders) == 1


async def test_submit_when_client_id_too_long_then_broker_error_and_nothing_sent(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    with pytest.raises(BrokerError, match="1 to 128"):
        await broker.submit("x" * 129, "EUR_USD", 100, 1.1)

    assert fake.requests == []


# --- retries --------------------------------------------------------------------------------


async def test_submit_when_429_with_retry_after_then_waits_and_succeeds(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    broker = make_broker(backoff_s=0.001)
    fake.inject(Fault("POST", "/orders", status=429, retry_after="0.3"))

    started = time.monotonic()
    order = await broker.submit("rate-1", "EUR_USD", 100, 1.1)

    assert time.monotonic() - started >= 0.3
    assert order.status is OrderStatus.FILLED
    assert fake.count("POST", "/orders") == 2
    assert len(fake.orders) == 1


async def test_account_when_5xx_persists_then_temporary_error_after_max_retries(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    broker = make_broker(max_retries=2)
    fake.inject(Fault("GET", "/summary", status=503, times=100))

    with pytest.raises(TemporaryBrokerError, match=r"GET /summary.*3 times.*HTTP 503"):
        await broker.account()

    assert fake.count("GET", "/summary") == 3


async def test_submit_when_post_keeps_failing_then_temporary_error_after_a_lookup_each_time(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    broker = make_broker(max_retries=2)
    fake.inject(Fault("POST", "/orders", status=502, times=100))

    with pytest.raises(TemporaryBrokerError, match="submit the same client id again"):
        await broker.submit("down-1", "EUR_USD", 100, 1.1)

    assert fake.count("POST", "/orders") == 3
    assert fake.count("GET", "/orders/@down-1") == 3
    assert fake.orders == {}


async def test_submit_when_post_times_out_after_placing_then_retry_finds_it_without_duplicate(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    broker = make_broker(timeout_s=0.3)
    fake.inject(Fault("POST", "/orders", hold_s=3.0))

    order = await broker.submit("slow-1", "EUR_USD", 100, 1.1)

    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == 100
    assert fake.count("POST", "/orders") == 1
    assert len(fake.orders) == 1


async def test_account_when_read_hangs_past_timeout_then_retried(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    broker = make_broker(timeout_s=0.2)
    fake.inject(Fault("GET", "/summary", hold_s=3.0))

    snapshot = await broker.account()

    assert snapshot.cash == pytest.approx(fake.balance)
    assert fake.count("GET", "/summary") == 2


async def test_account_when_nothing_listens_then_temporary_error_naming_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = OandaBroker("t", "a", base_url=f"http://127.0.0.1:{port}", backoff_s=0.001)
    try:
        with pytest.raises(TemporaryBrokerError, match="could not reach OANDA"):
            await broker.account()
    finally:
        await broker.close()


async def test_request_when_token_refused_then_broker_error_not_retried(
    make_broker: BrokerFactory, fake: FakeOanda
) -> None:
    broker = make_broker(token="wrong-token")

    with pytest.raises(BrokerError, match="check the API token and the account id") as caught:
        await broker.account()

    assert not isinstance(caught.value, TemporaryBrokerError)
    assert len(fake.requests) == 1


async def test_broker_never_logs_the_token(
    make_broker: BrokerFactory, fake: FakeOanda, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.inject(Fault("POST", "/orders", status=503))
    await make_broker().submit("log-1", "EUR_USD", 100, 1.1)
    with pytest.raises(BrokerError):
        await make_broker(token="wrong-token").account()

    assert "log-1" in caplog.text
    assert fake.token not in caplog.text
    assert "wrong-token" not in caplog.text


# --- pending orders, cancel and wait -----------------------------------------------------


async def test_cancel_when_order_pending_then_cancelled_and_no_longer_open(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    fake.plan(PENDING)
    placed = await broker.submit("wait-1", "EUR_USD", 100, 1.1)
    assert placed.status is OrderStatus.PENDING
    assert [o.client_id for o in await broker.open_orders()] == ["wait-1"]

    order = await broker.cancel("wait-1", "EUR_USD")

    assert order is not None
    assert order.status is OrderStatus.CANCELLED
    assert order.reason == "CLIENT_REQUEST"
    assert order.filled_quantity == 0
    assert await broker.open_orders() == []


async def test_cancel_when_order_done_or_unknown_then_nothing_sent(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    filled = await broker.submit("done-1", "EUR_USD", 100, 1.1)

    assert await broker.cancel("done-1", "EUR_USD") == filled
    assert await broker.cancel("nobody", "EUR_USD") is None
    assert fake.count("PUT") == 0


async def test_wait_when_pending_order_fills_then_returns_it_filled(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    fake.plan(PENDING)
    await broker.submit("wait-2", "EUR_USD", 100, 1.1)
    asyncio.get_running_loop().call_later(0.1, fake.fill_pending, "wait-2")

    order = await broker.wait("wait-2", "EUR_USD", timeout_s=3.0, poll_s=0.02)

    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == 100


async def test_wait_when_timeout_passes_then_returns_order_still_pending(
    broker: OandaBroker, fake: FakeOanda
) -> None:
    fake.plan(PENDING)
    await broker.submit("wait-3", "EUR_USD", 100, 1.1)

    order = await broker.wait("wait-3", "EUR_USD", timeout_s=0.1, poll_s=0.02)

    assert order.status is OrderStatus.PENDING
    assert not order.done


# --- environments ---------------------------------------------------------------------------


def test_environment_when_not_given_then_practice() -> None:
    assert OandaBroker("token", "account").base_url == PRACTICE_URL


@pytest.mark.parametrize(
    "settings",
    [{"environment": "live"}, {"base_url": LIVE_URL}, {"base_url": LIVE_URL + "/"}],
)
def test_live_when_switch_missing_then_config_error(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="real money"):
        OandaBroker("token", "account", **settings)  # type: ignore[arg-type]


def test_live_when_switched_on_explicitly_then_live_url() -> None:
    broker = OandaBroker("token", "account", environment="live", live=True)

    assert broker.base_url == LIVE_URL


@pytest.mark.parametrize(
    "settings",
    [
        {"environment": "demo"},
        {"live": True},
        {"time_in_force": "GTC"},
        {"token": ""},
        {"account_id": " "},
    ],
)
def test_settings_when_wrong_then_config_error(settings: dict[str, object]) -> None:
    settings = dict(settings)
    token = str(settings.pop("token", "token"))
    account_id = str(settings.pop("account_id", "account"))

    with pytest.raises(ConfigError):
        OandaBroker(token, account_id, **settings)  # type: ignore[arg-type]
