"""CcxtBroker (ccxt's binance) against a local server speaking the Binance spot REST subset it
uses (fake_binance.py): real HTTP, real ccxt signing and error mapping, no network."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests.integration.brokers.fake_binance import API_KEY, SECRET, FakeBinance

from ffe.domain.errors import BrokerError, ConfigError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.ccxt_broker import CcxtBroker

BrokerFactory = Callable[..., CcxtBroker]
BTC, ETH = "BTC/USDT", "ETH/USDT"
ORDER, ACCOUNT = "/api/v3/order", "/api/v3/account"


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance()
    server.start()
    yield server
    server.stop()
    assert not server.errors, "\n".join(server.errors)


@pytest.fixture
async def make_broker(fake: FakeBinance) -> AsyncIterator[BrokerFactory]:
    """Brokers on the fake with tiny backoff and no rate-limit pauses; closed afterwards."""
    made: list[CcxtBroker] = []

    def make(**overrides: object) -> CcxtBroker:
        settings: dict[str, object] = {
            "api_key": API_KEY,
            "secret": SECRET,
            "symbols": (BTC, ETH),
            "api_base_url": fake.url,
            "exchange_config": {"rateLimit": 1, "timeout_on_exit": 0},  # no pauses
            "max_retries": 2,
            "backoff_s": 0.001,
            "max_backoff_s": 0.05,
            "timeout_s": 2.0,
        }
        settings.update(overrides)
        broker = CcxtBroker("binance", **settings)  # type: ignore[arg-type]
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> CcxtBroker:
    return make_broker()


# -- fills and the account ---------------------------------------------------------------


async def test_submit_market_buy_when_filled_then_account_holds_it(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    order = await broker.submit("buy-1", BTC, 0.01, 20_000.0)

    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == pytest.approx(0.01)
    assert order.average_price == pytest.approx(20_000.0)
    assert order.commission == pytest.approx(0.00001 * 20_000.0)  # fee in BTC, at the fill
    assert order.broker_id == "1001"
    account = await broker.account()
    assert account.cash == pytest.approx(10_000.0 - 200.0)
    assert account.positions == {BTC: pytest.approx(0.5 + 0.01 - 0.00001)}
    assert fake.count("POST", ORDER) == 1


async def test_submit_sell_when_filled_then_quantities_negative(broker: CcxtBroker) -> None:
    order = await broker.submit("sell-1", BTC, -0.1, 20_000.0)

    assert order.status is OrderStatus.FILLED
    assert order.quantity == pytest.approx(-0.1)
    assert order.filled_quantity == pytest.approx(-0.1)
    assert order.commission == pytest.approx(2.0)  # fee in USDT as charged
    account = await broker.account()
    assert account.cash == pytest.approx(10_000.0 + 2_000.0 - 2.0)
    assert account.positions == {BTC: pytest.approx(0.4)}


async def test_fee_in_a_third_currency_then_commission_zero_and_logged(
    broker: CcxtBroker, fake: FakeBinance, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fee_asset = "BNB"

    with caplog.at_level(logging.WARNING, "ffe.execution.ccxt_broker"):
        order = await broker.submit("bnb-1", BTC, 0.01, 20_000.0)

    assert order.status is OrderStatus.FILLED
    assert order.commission == 0.0
    assert "BNB not converted to USDT" in caplog.text


# -- partial fills, polling, cancelling --------------------------------------------------


async def test_partial_fill_when_polled_then_progress_until_filled(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fill_in_steps([0.4, 0.3, 0.3], advance_on_poll=True)

    placed = await broker.submit("part-1", ETH, 1.0, 1_000.0)
    polled = await broker.order("part-1", ETH)
    finished = await broker.wait("part-1", ETH, timeout_s=2.0, poll_s=0.01)

    assert placed.status is OrderStatus.PENDING
    assert placed.filled_quantity == pytest.approx(0.4)
    assert polled is not None
    assert polled.status is OrderStatus.PENDING
    assert polled.filled_quantity == pytest.approx(0.7)
    assert polled.remaining == pytest.approx(0.3)
    assert polled.commission == pytest.approx(0.7 * 0.001 * 1_000.0)  # from the order's trades
    assert finished is not None
    assert finished.status is OrderStatus.FILLED
    assert finished.filled_quantity == pytest.approx(1.0)
    assert finished.commission == pytest.approx(1.0)


async def test_wait_when_order_stays_working_then_last_state_at_timeout(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fill_in_steps([0.4, 0.6], advance_on_poll=False)
    await broker.submit("slow-1", ETH, 1.0, 1_000.0)
    polls_before = fake.count("GET", ORDER)

    started = time.monotonic()
    order = await broker.wait("slow-1", ETH, timeout_s=0.15, poll_s=0.03)

    assert time.monotonic() - started < 1.0
    assert order is not None
    assert order.status is OrderStatus.PENDING
    assert order.filled_quantity == pytest.approx(0.4)
    assert fake.count("GET", ORDER) - polls_before >= 2  # polled, then polled again


async def test_cancel_when_partially_filled_then_keeps_filled_part(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.balances["ETH"] = 2.0
    fake.fill_in_steps([0.4, 0.6], advance_on_poll=False)
    await broker.submit("cxl-1", ETH, -1.0, 1_000.0)

    working = await broker.open_orders()
    cancelled = await broker.cancel("cxl-1", ETH)
    again = await broker.cancel("cxl-1", ETH)

    assert [(o.client_id, o.quantity, o.filled_quantity) for o in working] == [
        ("cxl-1", -1.0, pytest.approx(-0.4))
    ]
    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.reason == "canceled by the venue"
    assert cancelled.filled_quantity == pytest.approx(-0.4)
    assert cancelled.commission == pytest.approx(0.4)
    assert cancelled.remaining == 0.0
    assert again == cancelled  # cancelling a finished order changes nothing
    assert await broker.open_orders() == []


async def test_cancel_when_venue_has_no_such_order_then_none(broker: CcxtBroker) -> None:
    assert await broker.cancel("nobody", BTC) is None
    assert await broker.order("nobody", BTC) is None


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("scripted", [False, True], ids=["balance", "scripted"])
async def test_submit_when_insufficient_balance_then_rejected_with_reason(
    broker: CcxtBroker, fake: FakeBinance, scripted: bool
) -> None:
    if scripted:
        fake.fail("POST", ORDER, "insufficient")
    quantity = 0.01 if scripted else 1.0  # 1 BTC costs 20,000 USDT; the account holds 10,000

    order = await broker.submit("big-1", BTC, quantity, 20_000.0)

    assert order.status is OrderStatus.REJECTED
    assert "insufficient balance" in order.reason
    assert order.filled_quantity == 0.0
    assert fake.orders == {}
    assert fake.count("POST", ORDER) == 1  # refused, not retried
    assert fake.count("GET", ORDER) == 1  # the look before placing, nothing more


async def test_submit_when_symbol_not_configured_then_rejected_without_request(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    order = await broker.submit("other-1", "SOL/USDT", 1.0, 100.0)

    assert order.status is OrderStatus.REJECTED
    assert "SOL/USDT" in order.reason
    assert fake.requests == []


@pytest.mark.parametrize("client_id", ["x" * 37, "has space", "bad*char", ""])
async def test_submit_when_client_id_invalid_for_binance_then_broker_error(
    broker: CcxtBroker, fake: FakeBinance, client_id: str
) -> None:
    with pytest.raises(BrokerError, match="client order id"):
        await broker.submit(client_id, BTC, 0.01, 20_000.0)

    assert fake.requests == []


# -- idempotency ---------------------------------------------------------------------------


async def test_submit_same_client_id_twice_then_one_order_on_the_venue(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    first = await broker.submit("once-1", BTC, 0.01, 20_000.0)
    second = await broker.submit("once-1", BTC, 0.01, 20_000.0)

    assert len(fake.orders) == 1
    assert fake.count("POST", ORDER) == 1
    assert second.broker_id == first.broker_id
    assert second.status is OrderStatus.FILLED
    assert fake.balances["BTC"] == pytest.approx(0.5 + 0.01 - 0.00001)


async def test_submit_when_answer_lost_then_retry_finds_order_and_places_nothing(
    make_broker: BrokerFactory, fake: FakeBinance
) -> None:
    broker = make_broker(timeout_s=0.3)
    fake.fail("POST", ORDER, "drop")  # the order is placed, the answer never arrives

    order = await broker.submit("lost-1", BTC, 0.01, 20_000.0)

    assert order.status is OrderStatus.FILLED
    assert len(fake.orders) == 1
    assert fake.count("POST", ORDER) == 1
    assert fake.count("GET", ORDER) == 2  # a look before each attempt


async def test_submit_when_lookup_misses_a_working_order_then_duplicate_resolved_to_it(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fill_in_steps([0.4, 0.6], advance_on_poll=False)
    first = await broker.submit("dup-1", ETH, 1.0, 1_000.0)
    fake.fail("GET", ORDER, "missing")  # as if a concurrent submit placed it just now

    second = await broker.submit("dup-1", ETH, 1.0, 1_000.0)

    assert len(fake.orders) == 1
    assert fake.count("POST", ORDER) == 2  # the second was refused as a duplicate
    assert second.status is OrderStatus.PENDING
    assert second.broker_id == first.broker_id
    assert second.filled_quantity == pytest.approx(0.4)


# -- rate limits, outages, timeouts, authentication ----------------------------------------


async def test_submit_when_rate_limited_once_then_retried_and_filled(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fail("POST", ORDER, "429")

    order = await broker.submit("rl-1", BTC, 0.01, 20_000.0)

    assert order.status is OrderStatus.FILLED
    assert fake.count("POST", ORDER) == 2
    assert fake.count("GET", ORDER) == 2
    assert len(fake.orders) == 1


async def test_rate_limit_with_retry_after_then_waits_that_long(
    make_broker: BrokerFactory, fake: FakeBinance
) -> None:
    broker = make_broker(max_backoff_s=1.0)
    fake.fail("GET", ACCOUNT, "429", retry_after="0.3")

    started = time.monotonic()
    await broker.account()

    assert time.monotonic() - started >= 0.3
    assert fake.count("GET", ACCOUNT) == 2


async def test_rate_limit_when_retry_after_beyond_max_backoff_then_temporary_at_once(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fail("GET", ACCOUNT, "429", retry_after="120")

    with pytest.raises(TemporaryBrokerError, match="asked to wait 120s"):
        await broker.account()

    assert fake.count("GET", ACCOUNT) == 1


async def test_persistent_5xx_then_temporary_error_after_max_retries(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fail("GET", ACCOUNT, "500", times=10)

    with pytest.raises(TemporaryBrokerError) as caught:
        await broker.account()

    message = str(caught.value)
    assert "ccxt:binance" in message
    assert "fetch balance failed after 3 attempts" in message
    assert "An unknown error occurred" in message  # the venue's answer
    assert fake.count("GET", ACCOUNT) == 3  # the first try and max_retries=2 more


async def test_timeout_once_then_retried_and_answered(
    make_broker: BrokerFactory, fake: FakeBinance
) -> None:
    broker = make_broker(timeout_s=0.3)
    fake.fail("GET", ACCOUNT, "hang")

    account = await broker.account()

    assert account.cash == pytest.approx(10_000.0)
    assert fake.count("GET", ACCOUNT) == 2


async def test_timeout_every_time_then_temporary_error(
    make_broker: BrokerFactory, fake: FakeBinance
) -> None:
    broker = make_broker(timeout_s=0.3, max_retries=1)
    fake.fail("GET", ACCOUNT, "hang", times=5)

    with pytest.raises(TemporaryBrokerError, match="RequestTimeout"):
        await broker.account()

    assert fake.count("GET", ACCOUNT) == 2


@pytest.mark.parametrize(
    ("credentials", "answer"),
    [({"api_key": "wrong-key"}, "-2015"), ({"secret": "wrong-secret"}, "-1022")],
)
async def test_bad_credentials_then_broker_error_not_retried(
    make_broker: BrokerFactory, fake: FakeBinance, credentials: dict[str, str], answer: str
) -> None:
    broker = make_broker(**credentials)

    with pytest.raises(BrokerError, match=answer) as caught:
        await broker.account()

    assert not isinstance(caught.value, TemporaryBrokerError)
    assert fake.count("GET", ACCOUNT) == 1


async def test_submit_when_auth_refused_then_broker_error_and_nothing_placed(
    broker: CcxtBroker, fake: FakeBinance
) -> None:
    fake.fail("GET", ORDER, "auth")

    with pytest.raises(BrokerError, match="AuthenticationError") as caught:
        await broker.submit("auth-1", BTC, 0.01, 20_000.0)

    assert not isinstance(caught.value, TemporaryBrokerError)
    assert fake.count("GET", ORDER) == 1
    assert fake.count("POST", ORDER) == 0


# -- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sandbox": False}, "live=True"),
        ({"sandbox": True, "live": True}, "sandbox=False"),
        ({"symbols": ()}, "name the symbols"),
        ({"symbols": ("BTC/EUR",)}, "BASE/USDT"),
        ({"symbols": ("BTC/USDT", "BTC/USDT")}, "one per base"),
        ({"api_key": ""}, "api_key"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_s": 0.0}, "timeout_s"),
    ],
)
def test_construct_when_settings_wrong_then_config_error(
    overrides: dict[str, object], message: str
) -> None:
    settings: dict[str, object] = {"api_key": API_KEY, "secret": SECRET, "symbols": (BTC,)}
    settings.update(overrides)

    with pytest.raises(ConfigError, match=message):
        CcxtBroker("binance", **settings)  # type: ignore[arg-type]


def test_construct_when_exchange_unknown_then_config_error() -> None:
    with pytest.raises(ConfigError, match="no exchange 'nosuchexchange'"):
        CcxtBroker("nosuchexchange", api_key=API_KEY, secret=SECRET, symbols=(BTC,))


async def test_construct_by_default_then_sandbox_and_live_only_with_switch() -> None:
    quick = {"timeout_on_exit": 0}
    sandbox = CcxtBroker(
        "binance", api_key=API_KEY, secret=SECRET, symbols=(BTC,), exchange_config=quick
    )
    live = CcxtBroker("binance", api_key=API_KEY, secret=SECRET, symbols=(BTC,),
                      sandbox=False, live=True, exchange_config=quick)  # fmt: skip
    try:
        # white-box: where ccxt would send private requests (nothing is sent here)
        assert sandbox._exchange.urls["api"]["private"].startswith("https://testnet.")
        assert live._exchange.urls["api"]["private"].startswith("https://api.binance.com")
        assert (sandbox.name, sandbox.durable) == ("ccxt:binance", True)
    finally:
        await sandbox.close()
        await live.close()


async def test_market_data_loaded_once_and_spot_only(broker: CcxtBroker, fake: FakeBinance) -> None:
    await broker.submit("mk-1", BTC, 0.01, 20_000.0)
    await broker.order("mk-1", BTC)

    paths = {path for _, path, _ in fake.requests}
    assert fake.count("GET", "/api/v3/exchangeInfo") == 1
    assert not any(p.startswith(("/sapi", "/fapi", "/dapi", "/eapi")) for p in paths)
