"""KalshiBroker against a local server speaking the trade API v2 subset it uses
(tests/support/fake_kalshi.py), which checks every request's RSA-PSS signature."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests.support.fake_kalshi import FakeKalshi, Fault, pem_of, rsa_key

from ffe.agent.guarded import BrokerCircuitOpenError, GuardedBroker
from ffe.domain.errors import BrokerError, ConfigError, TemporaryBrokerError
from ffe.domain.orders import OrderStatus
from ffe.execution.kalshi_broker import DEMO_URL, PRODUCTION_URL, KalshiBroker
from ffe.risk.breaker import CircuitBreaker

KEY_ID = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c"
NYC = "KXRAIN-26DEC08-NYC"
BrokerFactory = Callable[..., KalshiBroker]


@pytest.fixture
def fake() -> Iterator[FakeKalshi]:
    server = FakeKalshi({KEY_ID: rsa_key("account").public_key()})
    server.start()
    yield server
    server.stop()
    assert not server.errors, "\n".join(server.errors)


@pytest.fixture
async def make_broker(fake: FakeKalshi) -> AsyncIterator[BrokerFactory]:
    """Brokers on the fake with tiny backoff and no client-side rate limit; closed after."""
    made: list[KalshiBroker] = []

    def make(**overrides: object) -> KalshiBroker:
        settings: dict[str, object] = {
            "base_url": fake.url,
            "timeout_s": 2.0,
            "max_retries": 3,
            "backoff_s": 0.005,
            "max_backoff_s": 0.02,
            "reads_per_s": 0.0,
            "writes_per_s": 0.0,
        }
        settings.update(overrides)
        key = settings.pop("private_key_pem", pem_of(rsa_key("account")))
        broker = KalshiBroker(str(settings.pop("key_id", KEY_ID)), key, **settings)  # type: ignore[arg-type]
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> KalshiBroker:
    return make_broker()


# --- signatures -------------------------------------------------------------------------------


async def test_requests_when_signed_with_account_key_then_accepted(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    snapshot = await broker.account()

    assert snapshot.cash == 1000.0
    assert fake.refused == []
    assert fake.count("GET", "/portfolio/balance") == 1


async def test_requests_when_signed_with_wrong_key_then_refused_with_clear_error(
    make_broker: BrokerFactory, fake: FakeKalshi
) -> None:
    impostor = make_broker(private_key_pem=pem_of(rsa_key("impostor")))

    with pytest.raises(BrokerError, match=r"HTTP 401.*check kalshi.key_id and the private key"):
        await impostor.account()

    assert fake.refused == ["signature does not verify"]
    assert not isinstance(BrokerError, TemporaryBrokerError)


async def test_requests_when_clock_is_off_then_refused_and_error_names_the_clock(
    make_broker: BrokerFactory, fake: FakeKalshi
) -> None:
    late = make_broker(clock=lambda: time.time() - 60)

    with pytest.raises(BrokerError, match="clock"):
        await late.account()

    assert fake.refused[0].startswith("timestamp")


async def test_signature_covers_path_without_query(broker: KalshiBroker, fake: FakeKalshi) -> None:
    await broker.order("never-sent", NYC)  # GET /portfolio/orders?ticker=...&limit=200

    assert fake.requests[0][2] == f"ticker={NYC}&limit=200"
    assert fake.refused == []


def test_private_key_when_not_pem_then_config_error() -> None:
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        KalshiBroker(KEY_ID, b"not a key")


# --- environments -----------------------------------------------------------------------------


def test_default_environment_is_demo() -> None:
    broker = KalshiBroker(KEY_ID, pem_of(rsa_key("account")))

    assert broker.base_url == DEMO_URL


def test_production_when_live_switch_off_then_refused() -> None:
    with pytest.raises(ConfigError, match="real money"):
        KalshiBroker(KEY_ID, pem_of(rsa_key("account")), environment="production")
    with pytest.raises(ConfigError, match="real money"):
        KalshiBroker(KEY_ID, pem_of(rsa_key("account")), base_url=PRODUCTION_URL)


def test_production_when_live_switch_on_then_allowed_and_live_on_demo_refused() -> None:
    key = pem_of(rsa_key("account"))

    broker = KalshiBroker(KEY_ID, key, environment="production", live=True)

    assert broker.base_url == PRODUCTION_URL
    with pytest.raises(ConfigError, match="environment='production'"):
        KalshiBroker(KEY_ID, key, live=True)


# --- orders -----------------------------------------------------------------------------------


async def test_buy_when_filled_then_order_position_cash_and_fees_reflect_it(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    order = await broker.submit("buy-1", NYC, 10, 0.40)

    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == 10
    assert order.average_price == pytest.approx(0.40)
    assert order.commission == pytest.approx(0.17)  # ceil(7 * 10 * 40 * 60 / 10000) cents
    snapshot = await broker.account()
    assert snapshot.positions == {NYC: 10.0}
    assert snapshot.cash == pytest.approx(1000 - 4.0 - 0.17)


async def test_submit_sends_limit_order_bounded_by_price_with_client_order_id(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    await broker.submit("buy-2", NYC, 3, 0.40)
    await broker.submit("sell-2", NYC, -3, 0.40)

    buy, sell = fake.by_client_id("buy-2"), fake.by_client_id("sell-2")
    assert buy is not None
    assert sell is not None
    assert (buy["side"], buy["action"], buy["yes_price"]) == ("yes", "buy", 45)
    assert (sell["action"], sell["yes_price"]) == ("sell", 35)
    assert buy["time_in_force"] == "immediate_or_cancel"


async def test_sell_without_yes_held_then_no_position_and_yes_terms_quantity(
    broker: KalshiBroker,
) -> None:
    order = await broker.submit("short-1", NYC, -4, 0.40)

    assert order.filled_quantity == -4
    snapshot = await broker.account()
    assert snapshot.positions == {NYC: -4.0}
    assert snapshot.cash == pytest.approx(1000 - 4 * 0.60 - 0.07)  # NO costs 1 - 0.40 each


async def test_submit_when_client_id_known_then_nothing_sent(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    first = await broker.submit("once-1", NYC, 2, 0.40)

    again = await broker.submit("once-1", NYC, 2, 0.40)

    assert again == first
    assert fake.count("POST", "/portfolio/orders") == 1


async def test_submit_when_placed_meanwhile_then_409_answered_with_existing_order(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    first = await broker.submit("race-1", NYC, 2, 0.40)
    # The lookup before the POST misses it (another process placed it a moment later).
    fake.inject(Fault("GET", "/portfolio/orders", payload='{"orders": [], "cursor": ""}'))

    again = await broker.submit("race-1", NYC, 2, 0.40)

    assert again == first
    assert fake.count("POST", "/portfolio/orders") == 2  # the second answered 409
    assert len([o for o in fake.orders.values() if o["client_order_id"] == "race-1"]) == 1


async def test_submit_when_venue_refuses_then_rejected_with_reason(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.markets[NYC]["status"] = "closed"

    closed = await broker.submit("closed-1", NYC, 1, 0.40)
    unknown = await broker.submit("unknown-1", "KXNOPE", 1, 0.40)
    too_big = await broker.submit("big-1", "KXRAIN-26DEC08-SF", 5000, 0.70)

    assert closed.status is OrderStatus.REJECTED
    assert "market_closed" in closed.reason
    assert unknown.status is OrderStatus.REJECTED
    assert "market_not_found" in unknown.reason
    assert too_big.status is OrderStatus.REJECTED
    assert "insufficient_balance" in too_big.reason


async def test_submit_when_not_whole_contracts_or_price_outside_unit_then_broker_error(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    with pytest.raises(BrokerError, match="whole contracts"):
        await broker.submit("frac-1", NYC, 2.5, 0.40)
    with pytest.raises(BrokerError, match=r"YES price in \(0, 1\)"):
        await broker.submit("price-1", NYC, 2, 40.0)
    assert fake.count("POST") == 0


# --- partial fills and cancels ----------------------------------------------------------------


async def test_submit_when_partly_filled_ioc_then_cancelled_with_filled_part(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.plan(0.4)

    order = await broker.submit("part-1", NYC, 10, 0.40)

    assert order.status is OrderStatus.CANCELLED
    assert order.filled_quantity == 4
    assert order.reason == "the unfilled rest was cancelled"
    assert (await broker.account()).positions == {NYC: 4.0}


async def test_submit_when_nothing_fills_ioc_then_rejected(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.plan(0.0)

    order = await broker.submit("none-1", NYC, 10, 0.40)

    assert order.status is OrderStatus.REJECTED
    assert order.filled_quantity == 0
    assert "price bound" in order.reason


async def test_resting_order_when_filled_in_parts_then_each_part_seen_until_filled(
    make_broker: BrokerFactory, fake: FakeKalshi
) -> None:
    broker = make_broker(time_in_force="good_till_canceled")
    fake.plan(0.3)

    first = await broker.submit("gtc-1", NYC, 10, 0.40)
    fake.fill_more("gtc-1", 5)
    second = await broker.order("gtc-1", NYC)
    fake.fill_more("gtc-1", 2)
    last = await broker.wait("gtc-1", NYC, timeout_s=1.0, poll_s=0.01)

    assert (first.status, first.filled_quantity, first.remaining) == (OrderStatus.PENDING, 3, 7)
    assert second is not None
    assert (second.filled_quantity, second.remaining) == (8, 2)
    assert (last.status, last.filled_quantity) == (OrderStatus.FILLED, 10)
    assert [o.client_id for o in await broker.open_orders()] == []


async def test_cancel_when_resting_then_cancelled_keeping_filled_part(
    make_broker: BrokerFactory, fake: FakeKalshi
) -> None:
    broker = make_broker(time_in_force="good_till_canceled")
    fake.plan(0.5)
    await broker.submit("gtc-2", NYC, 4, 0.40)
    assert [o.client_id for o in await broker.open_orders()] == ["gtc-2"]

    cancelled = await broker.cancel("gtc-2", NYC)
    again = await broker.cancel("gtc-2", NYC)

    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.filled_quantity == 2
    assert again == cancelled
    assert fake.count("DELETE") == 1
    assert await broker.cancel("never-sent", NYC) is None


# --- settlement and market data ---------------------------------------------------------------


async def test_market_when_settled_then_result_and_position_paid_out(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    await broker.submit("hold-1", NYC, 10, 0.40)
    before = await broker.market(NYC)

    fake.settle(NYC, "yes")
    after = await broker.market(NYC)
    snapshot = await broker.account()
    settlements = await broker.settlements()

    assert (before.settled, before.event) == (False, "KXRAIN-26DEC08")
    assert (after.result, after.settlement_price, after.status) == ("yes", 1.0, "finalized")
    assert snapshot.positions == {}
    assert snapshot.cash == pytest.approx(1000 - 4.0 - 0.17 + 10.0)
    assert settlements[0]["revenue"] == 1000
    assert settlements[0]["yes_count"] == 10


async def test_orderbook_in_unit_prices_from_fixed_point_or_legacy_book(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    legacy = '{"orderbook": {"yes": [[20, 5]], "no": null}}'
    fake.inject(Fault("GET", f"/markets/{NYC}/orderbook", payload=legacy))

    old = await broker.orderbook(NYC)
    book = await broker.orderbook(NYC)

    assert old == {"yes": [(0.20, 5.0)], "no": []}
    assert book["yes"][0] == (0.39, 120.0)
    assert book["no"] == [(0.60, 80.0)]


async def test_lists_when_paged_then_every_page_read(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.page_size = 2
    for number in range(5):
        await broker.submit(f"page-{number}", NYC, 1, 0.40)

    order = await broker.order("page-4", NYC)

    assert order is not None
    assert order.filled_quantity == 1
    assert (await broker.account()).positions == {NYC: 5.0}


# --- failures ---------------------------------------------------------------------------------


async def test_call_when_rate_limited_then_retry_after_honoured(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.inject(Fault("GET", "/portfolio/balance", status=429, retry_after="0.2", times=1))
    started = time.monotonic()

    snapshot = await broker.account()

    assert snapshot.cash == 1000.0
    assert time.monotonic() - started >= 0.2
    assert fake.count("GET", "/portfolio/balance") == 2


async def test_client_throttle_keeps_under_venue_rate_limit(
    make_broker: BrokerFactory, fake: FakeKalshi
) -> None:
    fake.rate_limit = (5, 0.1)  # 50 a second, in windows of 0.1 s
    polite = make_broker(reads_per_s=40.0, max_retries=0)
    eager = make_broker(max_retries=5, backoff_s=0.05)

    for _ in range(6):
        await polite.account()  # two reads each
    polite_requests = fake.count("GET")
    await asyncio.gather(*(eager.account() for _ in range(6)))

    assert polite_requests == 12  # none refused with 429, none retried
    assert fake.count("GET") > 24  # the eager broker was refused, and retried until it got in


async def test_call_when_5xx_persists_then_temporary_error_and_breaker_opens(
    make_broker: BrokerFactory, fake: FakeKalshi, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject(Fault("GET", "/portfolio/balance", status=503, times=100))
    guarded = GuardedBroker(
        make_broker(max_retries=1),
        CircuitBreaker(failure_threshold=2, cooldown_s=60.0, name="kalshi"),
    )

    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            with pytest.raises(TemporaryBrokerError, match=r"failed 2 times.*HTTP 503"):
                await guarded.account()
        with pytest.raises(BrokerCircuitOpenError):
            await guarded.account()

    assert fake.count("GET", "/portfolio/balance") == 4  # the open circuit sent nothing
    assert "retry 1 of 1" in caplog.text


async def test_call_when_answer_late_then_timed_out_and_retried(
    make_broker: BrokerFactory, fake: FakeKalshi
) -> None:
    broker = make_broker(timeout_s=0.2)
    fake.inject(Fault("GET", "/portfolio/balance", status=200, hold_s=1.0))

    snapshot = await broker.account()

    assert snapshot.cash == 1000.0
    assert fake.count("GET", "/portfolio/balance") == 2


async def test_submit_when_post_fails_then_looks_up_before_retrying(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.inject(Fault("POST", "/portfolio/orders", status=500, times=1))

    order = await broker.submit("retry-1", NYC, 2, 0.40)

    assert order.status is OrderStatus.FILLED
    assert fake.count("POST", "/portfolio/orders") == 2
    assert fake.count("GET", "/portfolio/orders") == 2


async def test_answer_when_malformed_then_clear_broker_error(
    broker: KalshiBroker, fake: FakeKalshi
) -> None:
    fake.inject(Fault("GET", "/portfolio/balance", payload='{"balance": "lots"}'))
    fake.inject(Fault("GET", f"/markets/{NYC}", payload="<html>oops</html>"))

    with pytest.raises(BrokerError, match="not shaped as the trade API v2 describes"):
        await broker.account()
    with pytest.raises(BrokerError, match="no JSON object"):
        await broker.market(NYC)
