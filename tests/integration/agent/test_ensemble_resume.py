"""An ensemble agent stopped between two refits and resumed decides as it would have
undisturbed: its models are refitted on the bars of their last fit, and their learnt weights
and pending forecasts come back from the checkpoint (bench/README.md, "Stack: load and chaos",
found a resumed agent's trades departing from an undisturbed replay's)."""

from __future__ import annotations

from sqlalchemy import select
from tests.support.agents import replay_agent, sqlite_journal

from ffe.agent.persist import Checkpoint
from ffe.store.models import AgentState, Decision, Fill

PARAMS = {"models": "naive,drift,garch", "window": 60, "refit_every": 21, "every": 5}
START, END = "2014-01-01", "2015-03-31"
STOP_AT = 150  # origin 90: between the refits at origins 84 and 105


async def _journal(db):
    async with db.session() as session:
        decisions = (await session.execute(select(Decision).order_by(Decision.id))).scalars()
        made = [(d.time, d.symbol, d.target, d.confidence) for d in decisions]
        fills = (await session.execute(select(Fill).order_by(Fill.id))).scalars()
        filled = [(f.time, f.quantity, f.price) for f in fills]
        state = (await session.execute(select(AgentState))).scalar_one()
    return made, filled, state


def _agent(db, tmp_path):
    return replay_agent(db, tmp_path, "ensemble", start=START, end=END, params=PARAMS)


async def test_resume_between_refits_then_decisions_and_fills_as_undisturbed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with sqlite_journal(tmp_path / "a") as db:
        whole = await _agent(db, tmp_path).run()
        undisturbed, undisturbed_fills, _ = await _journal(db)

    async with sqlite_journal(tmp_path / "b") as db:
        first = _agent(db, tmp_path)
        first.watch(on_bar=lambda report: report.bar >= STOP_AT and first.request_stop())
        stopped = await first.run()
        _, _, state = await _journal(db)
        saved = Checkpoint.of(state.checkpoint)
        resumed = await _agent(db, tmp_path).run()
        made, fills, _ = await _journal(db)

    assert whole.status == "finished"
    assert stopped.status == "interrupted"
    assert saved is not None
    assert saved.bar == STOP_AT
    assert saved.strategy is not None
    assert saved.strategy["SP500"]["hedge"]["observed"] > 0  # weights learnt before the stop
    assert resumed.resumed
    assert resumed.status == "finished"
    assert len(undisturbed) > 30
    assert made == undisturbed  # every decision: time, target and confidence, exactly
    assert fills == undisturbed_fills
