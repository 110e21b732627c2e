"""Decisions as journal rows: a hold that keeps the position says so, and reads back as one."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from ffe.domain.orders import Decision, action_of
from ffe.runs.journal import decision_row, journaled_target

T = datetime(2018, 1, 2, tzinfo=UTC)


def _read_back(decision: Decision, params: dict[str, str]) -> str:
    row = decision_row(decision)
    return action_of(journaled_target(row["target"], row["votes"], params))


def test_decision_row_when_hold_keeps_the_position_then_reads_back_as_hold_not_flat():
    hold = Decision(T, "SP500", math.nan, details={"action": "hold"})

    row = decision_row(hold)

    assert row["target"] == 0.0  # the column takes a number
    assert row["votes"]["keep"] is True
    assert _read_back(hold, {"hold": "flat"}) == "hold"  # the row's own word comes first


def test_decision_row_when_hold_goes_flat_then_reads_back_as_flat():
    flat = Decision(T, "SP500", 0.0, details={"action": "hold"})

    assert _read_back(flat, {}) == "flat"


def test_journaled_target_when_row_predates_the_mark_then_the_runs_hold_setting_decides():
    votes = {"action": "hold"}

    assert math.isnan(journaled_target(0.0, votes, {}))
    assert journaled_target(0.0, votes, {"hold": "flat"}) == 0.0
    assert journaled_target(0.25, {"action": "buy"}, {}) == 0.25
