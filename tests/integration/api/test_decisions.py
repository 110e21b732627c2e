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
