"""Pre-trade risk checks: verdicts, reasons and the projected account."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ffe.domain.orders import Approved, Denied, OrderIntent
from ffe.risk.engine import (
    AccountState,
    MaxDrawdownHalt,
    MaxGrossLeverage,
    MaxPositionPct,
    RiskEngine,
    reduces_only,
)

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def intent(
    quantity: float, symbol: str = "A", price: float = 100.0, cid: str = "c1"
) -> OrderIntent:
    return OrderIntent(cid, T0, symbol, quantity, reference_price=price)


def account(
    equity: float = 1_000.0,
    peak: float | None = None,
    positions: dict[str, float] | None = None,
    price: float = 100.0,
    halted: bool = False,
) -> AccountState:
    """An account whose gross exposure matches its positions at ``price``."""
    held = dict(positions or {})
    gross = sum(abs(q) for q in held.values()) * price
    return AccountState(
        equity=equity,
        peak_equity=equity if peak is None else peak,
        positions=held,
        gross_exposure=gross,
        halted=halted,
    )


def strict_engine() -> RiskEngine:
    return RiskEngine.from_limits(max_position_pct=0.5, max_gross_leverage=1.0, max_drawdown=0.2)


# -- each check on its own ----------------------------------------------------------------


def test_max_position_pct_when_at_limit_then_approved():
    assert MaxPositionPct(0.5).check(intent(5), account()) is None  # 500 of 1000


def test_max_position_pct_when_above_limit_then_denied_naming_limit():
    denied = MaxPositionPct(0.5).check(intent(6), account())

    assert denied is not None
    assert denied.check == "max_position_pct"
    assert denied.reason == "position in A would be 60.0% of equity, limit 50.0%"


def test_max_position_pct_when_adding_to_existing_position_then_counts_total():
    denied = MaxPositionPct(0.5).check(intent(2), account(positions={"A": 4}))

    assert denied is not None
    assert "60.0%" in denied.reason


def test_max_position_pct_when_short_above_limit_then_denied():
    assert MaxPositionPct(0.5).check(intent(-6), account()) is not None


def test_max_gross_leverage_when_at_limit_then_approved():
    assert MaxGrossLeverage(1.0).check(intent(2, "B"), account(positions={"A": 8})) is None


def test_max_gross_leverage_when_above_limit_then_denied_naming_limit():
    denied = MaxGrossLeverage(1.0).check(intent(3, "B"), account(positions={"A": 8}))

    assert denied is not None
    assert denied.check == "max_gross_leverage"
    assert denied.reason == "gross leverage would be 1.10x, limit 1.00x"


def test_max_drawdown_halt_when_below_limit_then_approved():
    assert MaxDrawdownHalt(0.2).check(intent(1), account(equity=810, peak=1_000)) is None


def test_max_drawdown_halt_when_limit_reached_then_denied_naming_limit():
    denied = MaxDrawdownHalt(0.2).check(intent(1), account(equity=790, peak=1_000))

    assert denied is not None
    assert denied.check == "max_drawdown"
    assert denied.reason == "trading halted: drawdown reached 21.0%, limit 20.0%"


def test_max_drawdown_halt_when_account_halted_then_denied_even_without_drawdown():
    assert MaxDrawdownHalt(0.2).check(intent(1), account(halted=True)) is not None


@pytest.mark.parametrize(
    ("equity", "peak", "drawdown"), [(750, 1_000, 0.25), (1_200, 1_000, 0.0), (5, 0, 0.0)]
)
def test_drawdown_when_equity_and_peak_then_positive_fraction_below_peak(equity, peak, drawdown):
    assert account(equity=equity, peak=peak).drawdown == pytest.approx(drawdown)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (10, 4, True),
        (10, 0, True),
        (-10, -4, True),
        (0, 0, True),
        (10, 12, False),
        (10, -2, False),
        (0, 1, False),
    ],
)
def test_reduces_only_when_position_changes_then_true_only_toward_zero(before, after, expected):
    assert reduces_only(before, after) is expected


# -- the engine ---------------------------------------------------------------------------


def test_evaluate_when_within_every_limit_then_approved():
    [verdict] = strict_engine().evaluate([intent(5)], account())

    assert verdict == Approved(intent(5))


@pytest.mark.parametrize(
    ("state", "order", "check"),
    [
        (account(), intent(6), "max_position_pct"),
        (account(positions={"B": 8}), intent(3), "max_gross_leverage"),
        (account(equity=790, peak=1_000), intent(1), "max_drawdown"),
    ],
    ids=["position", "leverage", "drawdown"],
)
def test_evaluate_when_one_limit_broken_then_denied_by_that_check(state, order, check):
    [verdict] = strict_engine().evaluate([order], state)

    assert isinstance(verdict, Denied)
    assert verdict.check == check


@pytest.mark.parametrize(
    "state",
    [
        account(positions={"A": 9}),  # already over the position limit
        account(positions={"A": 9, "B": 5}),  # already over gross leverage
        account(equity=500, peak=1_000, positions={"A": 2}),  # drawdown halt
        account(positions={"A": 2}, halted=True),
        account(equity=-50, positions={"A": 2}),
    ],
    ids=["over-position", "over-leverage", "drawdown", "halted", "negative-equity"],
)
def test_evaluate_when_order_only_reduces_then_approved_whatever_the_limits(state):
    [verdict] = strict_engine().evaluate([intent(-1)], state)

    assert verdict.approved


def test_evaluate_when_halted_and_order_flips_position_then_denied():
    [verdict] = strict_engine().evaluate([intent(-4)], account(positions={"A": 2}, halted=True))

    assert isinstance(verdict, Denied)
    assert verdict.check == "max_drawdown"


def test_evaluate_when_halted_then_new_exposure_in_any_symbol_denied():
    state = account(equity=700, peak=1_000, positions={"A": 2})

    verdicts = strict_engine().evaluate([intent(1, "A"), intent(-1, "B", cid="c2")], state)

    assert [v.approved for v in verdicts] == [False, False]


@pytest.mark.parametrize("equity", [0.0, -10.0])
def test_evaluate_when_equity_not_positive_then_new_exposure_denied(equity):
    engine = RiskEngine()  # no limits at all: the equity rule still holds

    [verdict] = engine.evaluate([intent(1)], account(equity=equity, peak=1_000))

    assert isinstance(verdict, Denied)
    assert verdict.check == "equity"
    assert "not positive" in verdict.reason


def test_evaluate_when_batch_together_exceeds_gross_leverage_then_later_intent_denied():
    orders = [intent(4, "A", cid="a"), intent(4, "B", cid="b"), intent(4, "C", cid="c")]

    verdicts = strict_engine().evaluate(orders, account())

    assert [v.approved for v in verdicts] == [True, True, False]
    assert verdicts[2].check == "max_gross_leverage"


def test_evaluate_when_batch_reduces_first_then_freed_exposure_used_by_next():
    state = account(positions={"A": 5, "B": 5})  # gross 1000: at the 1x limit

    verdicts = strict_engine().evaluate([intent(-5, "A"), intent(5, "C", cid="c2")], state)

    assert [v.approved for v in verdicts] == [True, True]
    assert state.positions == {"A": 0, "B": 5, "C": 5}
    assert state.gross_exposure == pytest.approx(1_000.0)


def test_evaluate_when_intent_denied_then_projected_account_unchanged():
    state = account(positions={"A": 1})

    strict_engine().evaluate([intent(9)], state)

    assert state.positions == {"A": 1}
    assert state.gross_exposure == pytest.approx(100.0)


def test_evaluate_when_several_intents_then_one_verdict_each_in_order():
    orders = [
        intent(6, "A", cid="too-big"),
        intent(1, "B", cid="fine"),
        intent(-6, "C", cid="short-too-big"),
        intent(2, "D", cid="also-fine"),
    ]

    verdicts = strict_engine().evaluate(orders, account())

    assert [v.intent.client_id for v in verdicts] == [o.client_id for o in orders]
    assert [v.approved for v in verdicts] == [False, True, False, True]


def test_evaluate_when_several_checks_fail_then_first_check_named():
    engine = RiskEngine([MaxGrossLeverage(0.1), MaxPositionPct(0.1)])

    [verdict] = engine.evaluate([intent(5)], account())

    assert isinstance(verdict, Denied)
    assert verdict.check == "max_gross_leverage"


def test_engine_when_max_drawdown_none_then_no_halt_check():
    engine = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)

    [verdict] = engine.evaluate([intent(1)], account(equity=100, peak=1_000))

    assert verdict.approved
    assert [c.name for c in engine.checks] == ["max_position_pct", "max_gross_leverage"]
