"""The agent's decision-to-order times (``Agent.watch(on_order=...)``): one for each order sent
on the bar it was decided, none for a denied intent, an order a person approved later or a
flattening order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from tests.support.agents import replay_agent, sqlite_journal

from ffe.agent.control import AgentService
from ffe.domain.orders import Denied, OrderIntent
from ffe.risk.engine import AccountState, MaxGrossLeverage, MaxPositionPct, RiskEngine
from ffe.store.database import Database
from ffe.store.models import Order


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


@dataclass
class DenyEveryOther:
    """A risk check denying every second intent it is asked about."""

    name: str = "every_other"
    asked: int = 0

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        self.asked += 1
        return Denied(intent, self.name, "every other order") if self.asked % 2 == 0 else None


async def _orders(db: Database) -> list[str]:
    async with db.session() as session:
        return list((await session.scalars(select(Order.client_order_id))).all())


async def test_decision_to_order_when_orders_sent_then_one_time_each_and_none_for_denied(
    db, tmp_path
):
    risk = RiskEngine([MaxPositionPct(1.0), MaxGrossLeverage(1.0), DenyEveryOther()])
    agent = replay_agent(db, tmp_path, start="2017-01-01", risk=risk)
    seconds: list[float] = []
    agent.watch(on_order=seconds.append)

    await agent.run()

    sent = await _orders(db)
    assert len(sent) > 2
    assert len(agent.core.denials) > 1
    assert len(seconds) == len(sent)
    assert all(s > 0 for s in seconds)


async def test_decision_to_order_when_a_person_approved_the_order_then_it_is_not_timed(
    db, tmp_path
):
    agent = replay_agent(
        db, tmp_path, end="2014-06-30", approval="on_new_asset", command_poll_s=0.02
    )
    seconds: list[float] = []
    agent.watch(on_order=seconds.append)
    service, approved = AgentService(db), []

    async def approve() -> None:
        while True:
            for approval in await service.approvals("paper"):
                approved.append((await service.approve(approval.id, "tester")).client_order_id)
            await asyncio.sleep(0.02)

    approver = asyncio.create_task(approve())
    try:
        await agent.run()
    finally:
        approver.cancel()

    sent = await _orders(db)
    assert len(approved) == 1  # the first order of SP500 waited for a person; later ones not
    assert approved[0] in sent
    assert len(sent) > 3
    assert len(seconds) == len(sent) - 1


async def test_decision_to_order_when_drawdown_halt_flattens_then_flattening_is_not_timed(
    db, tmp_path
):
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=0.03)
    agent = replay_agent(db, tmp_path, start="2017-01-01", risk=risk)
    seconds: list[float] = []
    agent.watch(on_order=seconds.append)

    await agent.run()

    sent = await _orders(db)
    flattening = [client_id for client_id in sent if client_id.endswith("-d")]
    assert len(flattening) == 1
    assert len(sent) > 2
    assert len(seconds) == len(sent) - 1
