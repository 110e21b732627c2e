"""Position limits for binary contracts, per market and per event."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from ffe.domain.errors import ConfigError
from ffe.domain.orders import Approved, Denied, OrderIntent
from ffe.risk.contracts import ContractLimits, event_of
from ffe.risk.engine import AccountState, RiskEngine

T0 = datetime(2026, 12, 7, tzinfo=UTC)
NYC, SF = "KXRAIN-26DEC08-NYC", "KXRAIN-26DEC08-SF"


def intent(symbol: str, quantity: float, client_id: str = "o-1") -> OrderIntent:
    return OrderIntent(client_id, T0, symbol, quantity, 0.4)


def account(**positions: float) -> AccountState:
    held = {NYC if k == "nyc" else SF if k == "sf" else k: v for k, v in positions.items()}
    return AccountState(10_000.0, 10_000.0, held)


def test_event_of_market_ticker_is_its_prefix() -> None:
    assert event_of("KXHIGHNY-26DEC08-B45") == "KXHIGHNY-26DEC08"
    assert event_of("PLAIN") == "PLAIN"


def test_order_when_market_limit_exceeded_then_denied_with_setting_named() -> None:
    engine = RiskEngine([ContractLimits(per_market=100, per_event=None)])

    verdicts = engine.evaluate([intent(NYC, 60), intent(NYC, -130, "o-2")], account(nyc=50))

    assert isinstance(verdicts[0], Denied)
    assert verdicts[0].check == "contract_limits"
    assert (
        "110 contracts, limit 100 per market (risk.max_contracts_per_market)" in verdicts[0].reason
    )
    assert isinstance(verdicts[1], Approved)  # 50 - 130 = -80: within the limit


def test_order_when_event_limit_exceeded_across_markets_then_denied() -> None:
    engine = RiskEngine([ContractLimits(per_market=100, per_event=120)])

    verdicts = engine.evaluate(
        [intent(SF, 50), intent("KXSNOW-26DEC08-NYC", 90, "o-2")], account(nyc=-80)
    )

    assert isinstance(verdicts[0], Denied)
    assert "event KXRAIN-26DEC08 would be 130 contracts" in verdicts[0].reason
    assert isinstance(verdicts[1], Approved)  # another event


def test_events_map_overrides_ticker_convention() -> None:
    limits = ContractLimits(None, 10, events=((NYC, "WEATHER"), ("OTHER-1", "WEATHER")))

    denied = limits.check(intent(NYC, 6), account(**{"OTHER-1": 5.0}))

    assert denied is not None
    assert "event WEATHER would be 11 contracts" in denied.reason


def test_reducing_order_always_passes() -> None:
    engine = RiskEngine([ContractLimits(per_market=10, per_event=10)])

    (verdict,) = engine.evaluate([intent(NYC, -20)], account(nyc=50))

    assert isinstance(verdict, Approved)


def test_limits_when_below_one_then_config_error_and_pickle_round_trip() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        ContractLimits(0, None)
    limits = ContractLimits(5, 8, events=((NYC, "E"),))

    assert pickle.loads(pickle.dumps(limits)) == limits
    assert pickle.loads(pickle.dumps(limits)).event(NYC) == "E"
