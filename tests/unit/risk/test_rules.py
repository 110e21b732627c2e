"""The live agent's risk rules: each trips, each lets allowed and reducing orders through, the
trading day rolls over at UTC midnight, and the context survives a restart."""

from __future__ import annotations

import json
import math
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffe.domain.orders import OrderIntent
from ffe.risk.engine import AccountState, RiskCheck, RiskEngine
from ffe.risk.rules import (
    EmergencyHalt,
    LossCooldown,
    MaxDailyLoss,
    MaxTradesPerDay,
    MinConfidence,
    RiskContext,
    StaleData,
    daily_loss_tripped,
)

T0 = datetime(2024, 1, 2, 14, 0, tzinfo=UTC)


def intent(quantity: float = 1.0, symbol: str = "A") -> OrderIntent:
    return OrderIntent("c1", T0, symbol, quantity, reference_price=10.0)


def context(equity: float = 1_000.0, bar: int = 1, at: datetime = T0) -> RiskContext:
    """A context that has seen one bar, read live right at the bar's time."""
    ctx = RiskContext()
    ctx.on_bar(bar, at, at, equity)
    return ctx


def account(
    ctx: RiskContext | None, equity: float | None = None, positions: dict[str, float] | None = None
) -> AccountState:
    current = equity if equity is not None else (ctx.equity if ctx is not None else 1_000.0)
    held = dict(positions or {})
    gross = sum(abs(q) for q in held.values()) * 10.0
    return AccountState(current, current, held, gross, context=ctx)


def reduce_and_add(check: RiskCheck, ctx: RiskContext, equity: float | None = None) -> list[bool]:
    """Through the engine: a sell that shrinks a long position, then a buy that adds to it."""
    engine = RiskEngine([check])
    verdicts = engine.evaluate(
        [intent(-2.0), intent(1.0)], account(ctx, equity, positions={"A": 5.0})
    )
    return [v.approved for v in verdicts]


ALL_CHECKS = [
    EmergencyHalt(),
    MaxDailyLoss(0.03),
    MaxTradesPerDay(1),
    MinConfidence(0.9),
    StaleData(1.0),
    LossCooldown(5),
]


# -- without a context (the backtest) -----------------------------------------------------


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.name)
def test_check_when_no_context_then_allows_everything(check):
    assert check.check(intent(), account(None, equity=1.0)) is None


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.name)
def test_check_when_pickled_then_equal(check):
    assert pickle.loads(pickle.dumps(check)) == check


@pytest.mark.parametrize(
    "make",
    [
        lambda: MaxDailyLoss(0.0),
        lambda: MaxDailyLoss(1.5),
        lambda: MaxTradesPerDay(0),
        lambda: MinConfidence(1.1),
        lambda: StaleData(0.0),
        lambda: LossCooldown(0),
    ],
)
def test_check_when_limit_out_of_range_then_value_error(make):
    with pytest.raises(ValueError, match="must be"):
        make()


# -- daily loss ---------------------------------------------------------------------------


def test_submit_order_when_daily_loss_hit_then_denied():
    ctx = context(equity=1_000.0)

    denied = MaxDailyLoss(0.03).check(intent(), account(ctx, equity=960.0))

    assert denied is not None
    assert denied.check == "max_daily_loss"
    assert "960.00 is 4.0% below the day's opening 1,000.00, limit 3.0%" in denied.reason
    assert ctx.daily_halt_reason == denied.reason


def test_submit_order_when_daily_loss_below_limit_then_approved():
    ctx = context(equity=1_000.0)

    assert MaxDailyLoss(0.03).check(intent(), account(ctx, equity=975.0)) is None
    assert ctx.daily_halt_reason is None


def test_reduce_only_order_when_daily_loss_hit_then_approved_and_buy_denied():
    assert reduce_and_add(MaxDailyLoss(0.03), context(1_000.0), equity=900.0) == [True, False]


def test_submit_order_when_daily_loss_hit_and_equity_recovers_same_day_then_still_denied():
    ctx = context(equity=1_000.0)
    check = MaxDailyLoss(0.03)
    check.check(intent(), account(ctx, equity=960.0))

    ctx.on_bar(2, T0 + timedelta(hours=1), T0 + timedelta(hours=1), 1_010.0)

    assert check.check(intent(), account(ctx)) is not None


def test_daily_loss_tripped_when_context_equity_falls_then_true_and_halt_reason_set():
    ctx = context(equity=1_000.0)
    check = MaxDailyLoss(0.03)
    assert not check.tripped(ctx)

    ctx.update_equity(970.0)  # exactly at the limit

    assert check.tripped(ctx)
    assert ctx.daily_halt_reason is not None


def test_daily_loss_tripped_when_engine_has_the_check_then_found_through_checks():
    engine = RiskEngine([EmergencyHalt(), MaxDailyLoss(0.05)])
    ctx = context(equity=1_000.0)
    ctx.update_equity(940.0)

    assert daily_loss_tripped(engine.checks, ctx)
    assert not daily_loss_tripped(RiskEngine([EmergencyHalt()]).checks, ctx)


def test_daily_loss_tripped_when_no_bar_seen_then_false():
    assert not MaxDailyLoss(0.03).tripped(RiskContext())


# -- the trading day ----------------------------------------------------------------------


def test_new_utc_day_when_daily_loss_halted_then_halt_and_trade_count_reset():
    ctx = context(equity=1_000.0)
    check = MaxDailyLoss(0.03)
    ctx.on_order_sent("A")
    ctx.update_equity(900.0)
    assert check.tripped(ctx)

    tomorrow = T0 + timedelta(days=1)
    ctx.on_bar(2, tomorrow, tomorrow, 900.0)

    assert ctx.daily_halt_reason is None
    assert ctx.trades_today == 0
    assert ctx.day_start_equity == 900.0
    assert check.check(intent(), account(ctx)) is None


def test_on_bar_when_same_utc_day_then_day_start_equity_and_trades_kept():
    ctx = context(equity=1_000.0)
    ctx.on_order_sent("A")

    later = T0 + timedelta(hours=9)  # 23:00 UTC, still the same day
    ctx.on_bar(2, later, later, 1_050.0)

    assert ctx.day_start_equity == 1_000.0
    assert ctx.trades_today == 1
    assert ctx.equity == 1_050.0


def test_on_bar_when_local_evening_is_next_utc_day_then_new_day_starts():
    ctx = context(equity=1_000.0, at=datetime(2024, 1, 2, 23, 0, tzinfo=UTC))
    new_york = timezone(timedelta(hours=-5))
    evening = datetime(2024, 1, 2, 20, 0, tzinfo=new_york)  # 01:00 UTC on 3 January

    ctx.on_bar(2, evening, evening, 990.0)

    assert ctx.day_start_equity == 990.0
    assert ctx.bar_time == datetime(2024, 1, 3, 1, 0, tzinfo=UTC)
    assert ctx.bar_time.tzinfo is UTC


def test_on_bar_when_naive_time_then_value_error():
    with pytest.raises(ValueError, match="bar_time must be timezone-aware"):
        RiskContext().on_bar(1, datetime(2024, 1, 2), T0, 1_000.0)


# -- trades per day -----------------------------------------------------------------------


def test_submit_order_when_trades_per_day_reached_then_denied():
    ctx = context()
    ctx.on_order_sent("A")
    ctx.on_order_sent("B")

    denied = MaxTradesPerDay(2).check(intent(), account(ctx))

    assert denied is not None
    assert denied.reason == "2 orders sent today (2024-01-02 UTC), limit 2"


def test_submit_order_when_trades_per_day_below_limit_then_approved():
    ctx = context()
    ctx.on_order_sent("A")

    assert MaxTradesPerDay(2).check(intent(), account(ctx)) is None


def test_reduce_only_order_when_trades_per_day_reached_then_approved_and_buy_denied():
    ctx = context()
    ctx.on_order_sent("A")

    assert reduce_and_add(MaxTradesPerDay(1), ctx) == [True, False]


# -- confidence ---------------------------------------------------------------------------


def test_submit_order_when_confidence_below_threshold_then_denied():
    ctx = context()
    ctx.set_confidence("A", 0.55)

    denied = MinConfidence(0.6).check(intent(), account(ctx))

    assert denied is not None
    assert denied.reason == "decision confidence for A is 0.55, minimum 0.60"


def test_submit_order_when_confidence_at_threshold_then_approved():
    ctx = context()
    ctx.set_confidence("A", 0.6)

    assert MinConfidence(0.6).check(intent(), account(ctx)) is None


def test_submit_order_when_no_confidence_for_symbol_then_counts_as_certain():
    ctx = context()
    ctx.set_confidence("B", 0.1)  # another symbol's decision

    assert MinConfidence(0.99).check(intent(symbol="A"), account(ctx)) is None


def test_submit_order_when_confidence_nan_then_denied():
    ctx = context()
    ctx.set_confidence("A", math.nan)

    assert MinConfidence(0.1).check(intent(), account(ctx)) is not None


def test_reduce_only_order_when_confidence_low_then_approved_and_buy_denied():
    ctx = context()
    ctx.set_confidence("A", 0.2)

    assert reduce_and_add(MinConfidence(0.5), ctx) == [True, False]


# -- stale data ---------------------------------------------------------------------------


def test_submit_order_when_bar_older_than_limit_then_denied():
    ctx = RiskContext()
    ctx.on_bar(1, T0, T0 + timedelta(seconds=121), 1_000.0)

    denied = StaleData(120.0).check(intent(), account(ctx))

    assert denied is not None
    assert denied.reason == "newest bar (2024-01-02 14:00:00 UTC) is 121s old, limit 120s"


def test_submit_order_when_bar_age_at_limit_then_approved():
    ctx = RiskContext()
    ctx.on_bar(1, T0, T0 + timedelta(seconds=120), 1_000.0)

    assert StaleData(120.0).check(intent(), account(ctx)) is None


def test_submit_order_when_replay_now_is_bar_time_then_never_stale():
    ctx = context(at=T0 - timedelta(days=3_000))  # an old bar, replayed

    assert StaleData(1.0).check(intent(), account(ctx)) is None


def test_submit_order_when_no_bar_seen_then_denied_as_stale():
    denied = StaleData(60.0).check(intent(), account(RiskContext(), equity=1_000.0))

    assert denied is not None
    assert denied.reason == "no bar received yet"


def test_reduce_only_order_when_data_stale_then_approved_and_buy_denied():
    ctx = RiskContext()
    ctx.on_bar(1, T0, T0 + timedelta(hours=1), 1_000.0)

    assert reduce_and_add(StaleData(60.0), ctx) == [True, False]


# -- loss cooldown ------------------------------------------------------------------------


def test_submit_order_when_loss_in_symbol_within_cooldown_then_denied():
    ctx = context(bar=10)
    ctx.on_trade_closed("A", pnl=-5.0)
    ctx.on_bar(12, T0 + timedelta(hours=2), T0 + timedelta(hours=2), 995.0)

    denied = LossCooldown(3).check(intent(), account(ctx))

    assert denied is not None
    assert denied.reason == (
        "cooling down after a losing trade in A at bar 10: 1 more bar(s), cooldown 3"
    )


def test_submit_order_when_cooldown_bars_passed_then_approved():
    ctx = context(bar=10)
    ctx.on_trade_closed("A", pnl=-5.0)
    ctx.on_bar(13, T0 + timedelta(hours=3), T0 + timedelta(hours=3), 995.0)

    assert LossCooldown(3).check(intent(), account(ctx)) is None


def test_submit_order_when_loss_was_in_another_symbol_then_approved():
    ctx = context(bar=10)
    ctx.on_trade_closed("B", pnl=-5.0)

    assert LossCooldown(3).check(intent(symbol="A"), account(ctx)) is None


@pytest.mark.parametrize("pnl", [5.0, 0.0], ids=["won", "break_even"])
def test_submit_order_when_last_trade_did_not_lose_then_no_cooldown(pnl):
    ctx = context(bar=10)
    ctx.on_trade_closed("A", pnl=pnl)

    assert LossCooldown(3).check(intent(), account(ctx)) is None
    assert ctx.last_loss_bar == {}


def test_reduce_only_order_when_cooling_down_then_approved_and_buy_denied():
    ctx = context(bar=10)
    ctx.on_trade_closed("A", pnl=-1.0)

    assert reduce_and_add(LossCooldown(3), ctx) == [True, False]


# -- emergency halt -----------------------------------------------------------------------


def test_submit_order_when_emergency_stop_then_denied_with_reason():
    ctx = context()
    ctx.emergency_stop("operator pressed stop")

    denied = EmergencyHalt().check(intent(), account(ctx))

    assert denied is not None
    assert denied.check == "emergency_halt"
    assert denied.reason == "emergency stop: operator pressed stop"


def test_submit_order_when_emergency_reset_then_approved():
    ctx = context()
    ctx.emergency_stop("test")

    ctx.reset_emergency()

    assert EmergencyHalt().check(intent(), account(ctx)) is None


def test_emergency_stop_when_new_day_or_restart_then_still_set():
    ctx = context()
    ctx.emergency_stop("broker misbehaving")
    tomorrow = T0 + timedelta(days=1)
    ctx.on_bar(2, tomorrow, tomorrow, 1_000.0)

    restored = RiskContext.from_dict(json.loads(json.dumps(ctx.to_dict())))

    assert EmergencyHalt().check(intent(), account(restored)) is not None


def test_reduce_only_order_when_emergency_stop_then_approved_and_buy_denied():
    ctx = context()
    ctx.emergency_stop("test")

    assert reduce_and_add(EmergencyHalt(), ctx) == [True, False]


# -- persistence --------------------------------------------------------------------------

_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_money = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
_symbols = st.text(min_size=1, max_size=8)


@given(
    bar=st.integers(0, 10**9),
    bar_time=st.none() | _times,
    now=st.none() | _times,
    equity=_money,
    day_start=st.none() | _money,
    trades=st.integers(0, 10**6),
    daily=st.none() | st.text(),
    emergency=st.none() | st.text(),
    losses=st.dictionaries(_symbols, st.integers(0, 10**9)),
    confidence=st.dictionaries(_symbols, st.floats(0, 1)),
)
def test_context_when_saved_as_json_and_restored_then_equal(
    bar, bar_time, now, equity, day_start, trades, daily, emergency, losses, confidence
):
    ctx = RiskContext(
        bar, bar_time, now, equity, day_start, trades, daily, emergency, losses, confidence
    )

    restored = RiskContext.from_dict(json.loads(json.dumps(ctx.to_dict(), allow_nan=False)))

    assert restored == ctx


def test_context_when_fresh_then_round_trips_with_nan_equity_and_nan_confidence():
    ctx = RiskContext()
    ctx.set_confidence("A", math.nan)

    restored = RiskContext.from_dict(json.loads(json.dumps(ctx.to_dict(), allow_nan=False)))

    assert math.isnan(restored.equity)
    assert math.isnan(restored.confidence["A"])
    assert restored.bar_time is None
    assert restored.day_start_equity is None


def test_context_from_dict_when_keys_missing_then_defaults():
    restored = RiskContext.from_dict({"bar": 7, "trades_today": 2})

    assert restored.bar == 7
    assert restored.trades_today == 2
    assert restored.emergency_halt_reason is None
    assert restored.last_loss_bar == {}
