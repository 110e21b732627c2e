"""Closing one position through the agent (``ffe.agent.closing``): the order passes the risk
engine like any other, what came of it is written back on the command, refusals say why."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from tests.support.agents import replay_agent, sqlite_journal

from ffe.agent.control import AgentService
from ffe.store.models import RiskVerdict


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


async def _until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def _held_agent(db, tmp_path):
    agent = replay_agent(db, tmp_path, "buy_and_hold", speed=100, command_poll_s=0.02)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.ledger.held)
    return agent, task


async def _stop(service, task):
    await service.command("paper", "stop")
    await task


async def test_close_when_position_held_then_sold_through_risk_and_the_verdict_journaled(
    db, tmp_path
):
    agent, task = await _held_agent(db, tmp_path)
    service = AgentService(db)
    held = next(iter(agent.core.ledger.held.values()))

    command_id = await service.close_position("paper", "SP500", held, "tester")
    outcome = await service.close_outcome(command_id, 5.0)
    await _until(lambda: not agent.core.ledger.held)
    await _stop(service, task)

    assert outcome["status"] == "sent"
    assert outcome["quantity"] == -held
    async with db.session() as session:
        verdict = await session.scalar(
            select(RiskVerdict).where(RiskVerdict.requested_quantity == -held)
        )
    assert verdict is not None
    assert verdict.approved


async def test_close_when_symbol_not_traded_or_not_held_then_refused_saying_so(db, tmp_path):
    agent, task = await _held_agent(db, tmp_path)
    service = AgentService(db)
    not_traded = await service.close_position("paper", "NASDAQ", None, "tester")
    first = await service.close_outcome(not_traded, 5.0)
    flat = await service.close_position("paper", "SP500", None, "tester")
    await service.close_outcome(flat, 5.0)
    await _until(lambda: not agent.core.ledger.held)

    again = await service.close_outcome(
        await service.close_position("paper", "SP500", None, "tester"), 5.0
    )
    await _stop(service, task)

    assert first["status"] == "refused"
    assert first["detail"] == "the agent on account paper does not trade NASDAQ (it trades SP500)"
    assert again["status"] == "refused"
    assert again["detail"] == "no open position in SP500 on account paper"


async def test_close_when_agent_ended_before_taking_it_then_refused_as_dropped(db, tmp_path):
    from ffe.agent import persist

    _, task = await _held_agent(db, tmp_path)
    service = AgentService(db)
    await _stop(service, task)
    command_id = await persist.queue_command(db, "paper", "close", "tester", {"symbol": "SP500"})
    state = await persist.get_state(db, "paper")
    await persist.acquire_lease(db, "paper", "next-owner", persist.LEASE_TTL)
    await persist.settle_stale_commands(
        db, "paper", "next-owner", state.updated_at.replace(year=2100), lambda c, a: None
    )

    outcome = await service.close_outcome(command_id, 1.0)

    assert outcome["status"] == "refused"
    assert outcome["detail"].startswith("dropped")
