"""A journaled decision's outcome in words (ffe.runs.outcome_status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ffe.domain.orders import Decision
from ffe.runs import outcome_status as status
from ffe.runs.journal import decision_row

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)


def _row(target: float, confidence: float, horizon: int, **details: object) -> dict[str, object]:
    return decision_row(Decision(T0, "SP500", target, confidence, "", (), horizon, details))


@pytest.mark.parametrize(
    ("row", "horizon"),
    [
        (_row(1.0, 1.0, 1), None),  # a plain target: nothing to judge it by
        (_row(float("nan"), 1.0, 1), None),  # a plain hold, marked keep by the journal
        (_row(0.5, 0.6, 1), 1),  # a confidence below one
        (_row(1.0, 1.0, 5), 5),  # a horizon
        (_row(0.0, 1.0, 1, action="hold"), 1),  # details: the ensemble's flat hold
        (_row(1.0, 1.0, 1, side=1, cost=0.001), 1),
    ],
)
def test_scored_horizon_when_row_journaled_then_same_rule_as_the_agent(
    row: dict[str, object], horizon: int | None
) -> None:
    assert status.scored_horizon(row["votes"], row["confidence"]) == horizon  # type: ignore[arg-type]


def test_scored_horizon_when_no_horizon_recorded_then_not_scored() -> None:
    assert status.scored_horizon({"weights": {}}, 0.5) is None
    assert status.scored_horizon(None, 0.5) is None


def test_resolved_when_wrong_then_says_so_with_the_price_move() -> None:
    found = status.resolved(3, -0.02, False)

    assert found.state == "resolved"
    assert found.text == "wrong: the price moved -1.98% over 3 bars"


def test_waiting_when_no_bar_since_then_resolve_time_from_the_decision_and_spacing() -> None:
    found = status.waiting(2, T0, [], DAY, run_open=True)

    assert (found.state, found.bars_left, found.estimated) == ("pending", 2, True)
    assert found.resolves_at == T0 + 2 * DAY
    assert (
        found.text
        == "pending: resolves after 2 bars more (horizon 2 bars), about 2026-03-04 00:00 UTC"
    )


def test_waiting_when_bar_spacing_unknown_then_no_time_given() -> None:
    found = status.waiting(1, T0, [], None, run_open=True)

    assert found.resolves_at is None
    assert found.text == "pending: resolves after 1 bar more (horizon 1 bar)"


def test_waiting_when_horizon_passed_then_unresolved_at_the_horizon_bar() -> None:
    later = [T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]

    found = status.waiting(2, T0, later, DAY, run_open=True)

    assert (found.state, found.resolves_at, found.estimated) == ("unresolved", T0 + 2 * DAY, False)
    assert "restart" in found.text
