"""Decisions through the API: a hold that kept the position reads as a hold (no target),
whether it was journaled before holds were marked or after."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from ffe.domain.orders import Decision

T0 = datetime(2018, 1, 2, tzinfo=UTC)


def _ensemble(day: int, target: float, action: str) -> Decision:
    details = {"action": action, "side": 1, "cost": 0.001}
    return Decision(
        T0 + timedelta(days=day), "SP500", target, 0.5, f"SP500: {action}", (), 5, details
    )


async def _journal(settings: Any, params: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    from ffe import bootstrap
    from ffe.store.repositories import unit_of_work

    db = await bootstrap.open_journal(settings)
    try:
        async with unit_of_work(db) as uow:
            run = await uow.runs.add(
                kind="paper", strategy="ensemble", code_version="test", params=params
            )
            await uow.journal.add_decisions(run.id, rows)
            return str(run.id)
    finally:
        await db.dispose()


def _listed(api: Any, run_id: str) -> list[tuple[str, float | None]]:
    found = api.client.get(f"/api/v1/decisions?run_id={run_id}", headers=api.headers()).json()
    return [(d["action"], d["target"]) for d in reversed(found["items"])]


def test_decisions_when_ensemble_held_then_hold_without_target_not_flat(api):
    from ffe.runs.journal import decision_row

    made = [_ensemble(0, 0.4, "buy"), _ensemble(5, math.nan, "hold"), _ensemble(10, 0.0, "flat")]
    run_id = asyncio.run(_journal(api.settings, {}, [decision_row(d) for d in made]))

    assert _listed(api, run_id) == [("buy", 0.4), ("hold", None), ("flat", 0.0)]


def test_decisions_when_journaled_before_holds_were_marked_then_read_from_the_run(api):
    old_hold = {"time": T0, "symbol": "SP500", "target": 0.0, "votes": {"action": "hold"}}
    keeping = asyncio.run(_journal(api.settings, {}, [old_hold]))
    flattening = asyncio.run(_journal(api.settings, {"hold": "flat"}, [old_hold]))

    assert _listed(api, keeping) == [("hold", None)]
    assert _listed(api, flattening) == [("flat", 0.0)]


async def _journal_with_bars(settings: Any, made: list[Decision], finished: bool) -> str:
    """A run of ten daily bars with ``made``; the first decision's outcome recorded."""
    from ffe import bootstrap
    from ffe.runs.journal import decision_row
    from ffe.store.repositories import unit_of_work

    db = await bootstrap.open_journal(settings)
    try:
        async with unit_of_work(db) as uow:
            run = await uow.runs.add(kind="paper", strategy="ensemble", code_version="test")
            times = [T0 + timedelta(days=i) for i in range(10)]
            await uow.journal.add_equity(run.id, times, [1e4] * 10)
            await uow.journal.add_decisions(run.id, [decision_row(d) for d in made])
            first = (await uow.journal.decision_ids(run.id))[0]
            outcome = {"decision_id": first, "horizon": 5, "realized_return": 0.01, "hit": True}
            await uow.journal.add_outcomes([{**outcome, "resolved_at": times[5]}])
            if finished:
                await uow.runs.finish(run)
            return str(run.id)
    finally:
        await db.dispose()


def _statuses(api: Any, run_id: str) -> dict[str, dict[str, Any]]:
    found = api.client.get(f"/api/v1/decisions?run_id={run_id}", headers=api.headers()).json()
    return {d["time"][:10]: d["outcome_status"] for d in found["items"]}


def test_decisions_when_outcomes_known_or_not_then_each_says_where_it_stands(api):
    plain = Decision(T0 + timedelta(days=8), "SP500", 1.0, 1.0, "go long", (), 1, {})
    made = [_ensemble(0, 0.4, "buy"), _ensemble(2, 0.4, "buy"), _ensemble(7, 0.0, "flat"), plain]
    run_id = asyncio.run(_journal_with_bars(api.settings, made, finished=False))

    found = _statuses(api, run_id)

    right = found["2018-01-02"]
    assert (right["state"], right["hit"], right["horizon"]) == ("resolved", True, 5)
    assert right["text"] == "right: the price moved +1.01% over 5 bars"
    lost = found["2018-01-04"]
    assert (lost["state"], lost["resolves_at"][:10]) == ("unresolved", "2018-01-09")
    assert "no outcome was recorded" in lost["text"]
    waits = found["2018-01-09"]
    assert (waits["state"], waits["bars_left"], waits["estimated"]) == ("pending", 3, True)
    assert waits["resolves_at"][:10] == "2018-01-14"
    assert waits["text"].startswith("pending: resolves after 3 bars more (horizon 5 bars)")
    assert found["2018-01-10"]["state"] == "unscored"
    assert "plain targets" in found["2018-01-10"]["text"]


def test_decisions_when_run_ended_before_the_horizon_then_pending_says_it_stays_so(api):
    run_id = asyncio.run(
        _journal_with_bars(
            api.settings, [_ensemble(0, 0.4, "buy"), _ensemble(7, 0.0, "flat")], True
        )
    )

    waits = _statuses(api, run_id)["2018-01-09"]

    assert waits["state"] == "pending"
    assert "the run ended 3 bars before its 5 bars horizon" in waits["text"]
